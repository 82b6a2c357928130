"""Top-level URLs: CRM views, the REST API and its schema, the Slack endpoint, admin."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("crm_plugin.api.urls")),
    path("slack/", include("churnbot.urls")),
    path("", include("crm_plugin.web.urls")),
]
