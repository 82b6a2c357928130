"""Top-level URLs: CRM views, the REST API and its schema, the Slack endpoint, admin.

The schema and its browsable docs need a signed-in user or a token (SPECTACULAR_SETTINGS
SERVE_PERMISSIONS): they map the whole API. A browser that is not signed in is sent to the
sign-in page for the docs instead of getting a bare 401.

Browsers ask for /favicon.ico by themselves (on the admin, the API docs, a JSON answer): it
redirects to the icon in static/, so no page logs a 404 for it.
"""
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView


@require_safe
def favicon(request: HttpRequest) -> HttpResponseRedirect:
    # Not permanent: in production the target is a hashed file name that changes with the icon.
    response = HttpResponseRedirect(static("favicon.ico"))
    patch_cache_control(response, public=True, max_age=86400)
    return response


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("api/", include("crm_plugin.api.urls")),
    path("slack/", include("churnbot.urls")),
    path("", include("crm_plugin.web.urls")),
]
