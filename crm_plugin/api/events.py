"""The REST API (DRF). Thin: parse, call one service, render. Every endpoint needs authentication."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_plugin.errors import CrmError
from crm_plugin.models import Event
from crm_plugin.events.importing import MAX_API_BATCH, events_import_records

_event_in = inline_serializer("EventIn", fields={
    "customer_id": serializers.CharField(help_text="The shop's customer id"),
    "kind": serializers.ChoiceField(choices=Event.Kind.values),
    "occurred_at": serializers.CharField(help_text="ISO 8601 date or datetime; naive times are UTC"),
    "amount": serializers.DecimalField(max_digits=12, decimal_places=2, required=False),
    "quantity": serializers.IntegerField(required=False, min_value=0),
    "rating": serializers.IntegerField(required=False, min_value=1, max_value=5),
    "text": serializers.CharField(required=False),
    "attributes": serializers.DictField(required=False),
    "source_id": serializers.CharField(required=False, help_text="Stable id; re-sending it adds nothing"),
    "name": serializers.CharField(required=False),
    "email": serializers.EmailField(required=False),
    "segment": serializers.CharField(required=False),
    "owner_email": serializers.EmailField(required=False),
})
_problem = inline_serializer("ImportProblem", fields={
    "row": serializers.IntegerField(allow_null=True, help_text="1-based position in `events`"),
    "field": serializers.CharField(allow_null=True),
    "message": serializers.CharField(),
})


class EventBatchApi(APIView):
    """POST a batch of events; all or nothing, idempotent by `source_id` (or content)."""

    @extend_schema(
        operation_id="events_import",
        request=inline_serializer("EventBatchIn", fields={"events": _event_in.__class__(many=True)}),
        responses={
            201: inline_serializer("EventBatchOut", fields={
                "rows": serializers.IntegerField(), "added": serializers.IntegerField(),
                "skipped": serializers.IntegerField(), "customers_created": serializers.IntegerField(),
            }),
            400: inline_serializer("EventBatchErrors", fields={
                "detail": serializers.CharField(), "errors": _problem.__class__(many=True),
            }),
        },
        description=f"At most {MAX_API_BATCH:,} events per request. One bad event means none is stored.",
        examples=[OpenApiExample("one order", value={"events": [
            {"customer_id": "C1001", "kind": "order", "occurred_at": "2026-11-02T10:15:00Z", "amount": "45.00"}]})],
    )
    def post(self, request):
        try:
            data = request.data
        except ParseError as exc:  # answer in the same shape as every other 400 here
            return Response({"detail": str(exc.detail), "errors": [
                {"row": None, "field": "events", "message": str(exc.detail)}]}, status=status.HTTP_400_BAD_REQUEST)
        events = data.get("events") if isinstance(data, dict) else None
        try:
            summary = events_import_records(records=events)
        except CrmError as exc:
            errors = [{"row": p["row"], "field": p["field"], "message": p["message"]} for p in exc.problems]
            if not errors:  # a problem with the whole batch (missing, empty, too large)
                errors = [{"row": None, "field": "events", "message": exc.message}]
            return Response({"detail": exc.message, "errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"rows": summary.rows, "added": summary.added, "skipped": summary.skipped,
                         "customers_created": summary.customers_created}, status=status.HTTP_201_CREATED)
