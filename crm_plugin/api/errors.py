"""One shape for every 400 the API gives: {"detail": ..., "errors": [{"row", "field", "message"}]}.

Clients handle one shape; a body too large for Django's form limit, which Django itself would
answer with an HTML page, gets it too.
"""
from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import exception_handler


def problem_response(detail: str, errors: list[dict] | None = None, *, field: str | None = None) -> Response:
    """A 400 in the API's shape; without `errors`, one error carrying `detail` for `field`."""
    if not errors:
        errors = [{"row": None, "field": field, "message": detail}]
    return Response({"detail": detail, "errors": errors}, status=status.HTTP_400_BAD_REQUEST)


def _flatten(data, field: str | None = None) -> list[dict]:
    """DRF's error data ({"field": ["message"]}, ["message"], "message") as a list of problems."""
    if isinstance(data, dict):
        return [p for key, value in data.items() for p in _flatten(value, None if key == "detail" else str(key))]
    if isinstance(data, list):
        return [p for value in data for p in _flatten(value, field)]
    return [{"row": None, "field": field, "message": str(data)}]


def api_exception_handler(exc, context):
    """DRF's handler, with 400s reshaped and RequestDataTooBig answered as a 400 in that shape."""
    if isinstance(exc, RequestDataTooBig):
        exc = ParseError("The request body is larger than this server accepts; send less per request.")
    response = exception_handler(exc, context)
    if response is None or response.status_code != status.HTTP_400_BAD_REQUEST:
        return response
    if isinstance(response.data, dict) and "errors" in response.data:
        return response
    errors = _flatten(response.data)
    detail = errors[0]["message"] if len(errors) == 1 else f"{len(errors)} problems: " + "; ".join(
        f"{p['field']}: {p['message']}" if p["field"] else p["message"] for p in errors)
    response.data = {"detail": detail, "errors": errors}
    return response
