"""REST API routes (DRF). Every endpoint needs authentication."""
from django.urls import path

from crm_plugin.api.customers import (
    CustomerDetailApi, CustomerListApi, InterventionListApi, InterventionOutcomeApi,
)
from crm_plugin.api.events import EventBatchApi
from crm_plugin.api.loop import RetentionLiftApi

urlpatterns = [
    path("events/", EventBatchApi.as_view(), name="api-events"),
    path("lift/", RetentionLiftApi.as_view(), name="api-lift"),
    path("customers/", CustomerListApi.as_view(), name="api-customers"),
    path("customers/<int:pk>/", CustomerDetailApi.as_view(), name="api-customer"),
    path("interventions/", InterventionListApi.as_view(), name="api-interventions"),
    path("interventions/<int:pk>/outcome/", InterventionOutcomeApi.as_view(), name="api-intervention-outcome"),
]
