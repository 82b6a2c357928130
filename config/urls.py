"""Top-level URLs: CRM views, the REST API and its schema, the Slack endpoint, admin.

The schema and its browsable docs need a signed-in user or a token (SPECTACULAR_SETTINGS
SERVE_PERMISSIONS): they map the whole API. A browser that is not signed in is sent to the
sign-in page for the docs instead of getting a bare 401.
"""
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("api/", include("crm_plugin.api.urls")),
    path("slack/", include("churnbot.urls")),
    path("", include("crm_plugin.web.urls")),
]
