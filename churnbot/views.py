"""The Django view behind /slack/events: Bolt checks the signature and dispatches."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from churnbot.bolt import NOT_CONFIGURED, request_handler


@csrf_exempt  # Slack cannot send a CSRF token; every request is HMAC-signed instead.
@require_POST
def slack_events(request: HttpRequest) -> HttpResponse:
    handler = request_handler()
    if handler is None:
        return HttpResponse(NOT_CONFIGURED, status=503, content_type="text/plain; charset=utf-8")
    return handler.handle(request)
