"""The Django view behind /slack/events: Bolt checks the signature and dispatches.

Bolt assumes a well-formed request: it decodes the body as UTF-8, reads the timestamp header
as an integer and parses the body before checking the signature, and any surprise there is a
500. So what Slack always sends is checked first, and anything else is refused plainly. The same
goes for the shape of an interactive envelope (a signed request can still be hand-made): Bolt and
the listeners index `actions[0]`, `user.id`, `view.state.values` without asking.
"""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_bolt.adapter.django.handler import to_django_response
from slack_bolt.request import BoltRequest

from churnbot.bolt import NOT_CONFIGURED, request_handler


def _envelope_problem(body: dict) -> str | None:
    """What is wrong with the shape of an interactive payload, or None (commands and events pass)."""
    def obj(value) -> bool:
        return isinstance(value, dict)

    for key in ("user", "team", "channel", "container", "message"):
        if body.get(key) is not None and not obj(body[key]):  # null: Slack sends "team": null org-wide
            return f"`{key}` is not an object"
    if "actions" in body and not (isinstance(body["actions"], list) and all(obj(a) for a in body["actions"])):
        return "`actions` is not a list of objects"
    if "view" in body:
        view = body["view"]
        if not obj(view):
            return "`view` is not an object"
        state = view.get("state", {})
        values = state.get("values", {}) if obj(state) else None
        if not (obj(values) and all(obj(block) and all(obj(v) for v in block.values()) for block in values.values())):
            return "`view.state.values` is not blocks of inputs"
    return None


def _plain(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


@csrf_exempt  # Slack cannot send a CSRF token; every request is HMAC-signed instead.
@require_POST
def slack_events(request: HttpRequest) -> HttpResponse:
    handler = request_handler()
    if handler is None:
        return _plain(NOT_CONFIGURED, 503)
    try:
        body = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return _plain("The request body is not UTF-8.", 400)
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    if not (timestamp.isascii() and timestamp.isdigit()):
        # Unsigned as far as we can tell: the same answer Bolt gives a bad signature.
        return _plain("invalid request", 401)
    try:
        bolt_request = BoltRequest(body=body, query=request.META.get("QUERY_STRING", ""), headers=request.headers)
    except (ValueError, AttributeError, TypeError):  # not JSON, or JSON that is not an object
        return _plain("The request body is not a Slack payload.", 400)
    problem = _envelope_problem(bolt_request.body)
    if problem:
        # Checked before the signature (Bolt would have failed on it first); says nothing about our data.
        return _plain(f"The request body is not a Slack payload: {problem}.", 400)
    return to_django_response(handler.app.dispatch(bolt_request))
