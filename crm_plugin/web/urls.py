"""CRM web views, mounted at / by config/urls.py; sign-in uses Django's auth views.

No URL namespace: settings.LOGIN_URL and LOGOUT_REDIRECT_URL name `login` plainly, so the
CRM pages carry a `crm-` prefix instead.
"""
from django.contrib.auth import views as auth_views
from django.urls import path

from crm_plugin.web import views
urlpatterns = [
    path("", views.worklist, name="crm-worklist"),
    path("export.csv", views.worklist_export, name="crm-worklist-export"),
    path("selected/", views.worklist_bulk, name="crm-worklist-bulk"),
    path("customers/<int:pk>/", views.customer_detail, name="crm-customer"),
    path("interventions/", views.interventions, name="crm-interventions"),
    path("models/", views.model_report, name="crm-models"),
    path("models/<int:pk>/promote/", views.model_promote, name="crm-model-promote"),
    path("impact/", views.impact, name="crm-impact"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
