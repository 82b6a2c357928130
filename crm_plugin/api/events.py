"""The REST API (DRF). Thin: parse, call one service, render. Every endpoint needs authentication."""
from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_plugin.api.errors import problem_response
from crm_plugin.errors import CrmError
from crm_plugin.models import Event
from crm_plugin.events.importing import MAX_API_BATCH, events_import_records
from crm_plugin.api.integrations import IMPORT_PERMISSION

_event_in = inline_serializer("EventIn", fields={
    "customer_id": serializers.CharField(help_text="The shop's customer id"),
    "kind": serializers.ChoiceField(choices=Event.Kind.values),
    "occurred_at": serializers.CharField(help_text="ISO 8601 date or datetime; naive times are UTC"),
    "amount": serializers.DecimalField(max_digits=12, decimal_places=2, required=False),
    "quantity": serializers.IntegerField(required=False, min_value=0),
    "rating": serializers.IntegerField(required=False, min_value=1, max_value=5),
    "text": serializers.CharField(required=False),
    "attributes": serializers.DictField(required=False),
    "source_id": serializers.CharField(required=False, help_text="Stable id; re-sending the same event adds nothing, "
                                       "a ticket or coupon re-sent with its state moved forward (closed, "
                                       "redeemed) updates the stored one, any other event with a stored id is "
                                       "refused"),
    "name": serializers.CharField(required=False),
    "email": serializers.EmailField(required=False),
    "segment": serializers.CharField(required=False),
    "owner_email": serializers.EmailField(required=False),
    "closed_at": serializers.CharField(required=False, allow_null=True,
                                       help_text="Tickets: when the ticket was closed (ISO 8601; not before "
                                                 "occurred_at). Models count it as closed only after this time"),
    "redeemed_at": serializers.CharField(required=False, allow_null=True,
                                         help_text="Coupons: when the coupon was redeemed (ISO 8601; not before "
                                                   "occurred_at). Models count it as redeemed only after this time"),
})
_problem = inline_serializer("ImportProblem", fields={
    "row": serializers.IntegerField(allow_null=True, help_text="1-based position in `events`"),
    "field": serializers.CharField(allow_null=True),
    "message": serializers.CharField(),
})


class CanImportEvents(permissions.BasePermission):
    """Importing is for integrations: it creates customers and sets their profile and owner."""

    message = ("Importing events needs an integration token (an admin creates one with "
               "`manage.py integration_create NAME`); people's accounts cannot import.")

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(IMPORT_PERMISSION))


class EventBatchApi(APIView):
    """POST a batch of events; all or nothing, idempotent by `source_id` (or content); re-sent states move forward."""

    permission_classes = [permissions.IsAuthenticated, CanImportEvents]

    @extend_schema(
        operation_id="events_import",
        request=inline_serializer("EventBatchIn", fields={"events": _event_in.__class__(many=True)}),
        responses={
            201: OpenApiResponse(
                description="The whole batch is stored (or was already): how many events came, were added, "
                            "updated a stored ticket's or coupon's state, were skipped as already imported, and "
                            "how many customers were created. rows = added + updated + skipped.",
                response=inline_serializer("EventBatchOut", fields={
                    "rows": serializers.IntegerField(help_text="events in the request"),
                    "added": serializers.IntegerField(help_text="events stored now"),
                    "updated": serializers.IntegerField(help_text="stored events whose state this batch moved "
                                                                  "forward: tickets_closed + coupons_redeemed"),
                    "skipped": serializers.IntegerField(help_text="events already imported (same source_id and "
                                                                  "content), left as they were"),
                    "customers_created": serializers.IntegerField(help_text="customers first seen in this batch"),
                    "tickets_closed": serializers.IntegerField(help_text="stored open tickets re-sent closed"),
                    "coupons_redeemed": serializers.IntegerField(help_text="stored unused coupons re-sent redeemed"),
                })),
            400: inline_serializer("EventBatchErrors", fields={
                "detail": serializers.CharField(), "errors": _problem.__class__(many=True),
            }),
            403: inline_serializer("EventBatchForbidden", fields={"detail": serializers.CharField()}),
        },
        description=(f"At most {MAX_API_BATCH:,} events per request. One bad event means none is stored. "
                     "Re-send a ticket or coupon with its source_id as it stands today: an open ticket now closed "
                     "(an unused coupon now redeemed) updates the stored event; moving a state back, changing a "
                     "closing or redemption time, or changing anything else is refused. "
                     "Needs an integration user's token (permission `crm_plugin.import_events`)."),
        examples=[OpenApiExample("one order", value={"events": [
            {"customer_id": "C1001", "kind": "order", "occurred_at": "2026-11-02T10:15:00Z", "amount": "45.00"}]}),
                  OpenApiExample("a ticket closed since it was sent", value={"events": [
                      {"customer_id": "C1001", "kind": "ticket", "occurred_at": "2026-11-02T10:15:00Z",
                       "text": "refund not processed", "source_id": "ticket-T-88",
                       "closed_at": "2026-11-04T16:40:00Z"}]})],
    )
    def post(self, request):
        try:
            data = request.data
        except ParseError as exc:  # the body as a whole: same shape, field "events"
            return problem_response(str(exc.detail), field="events")
        except RequestDataTooBig:
            return problem_response("The request body is larger than this server accepts; send fewer events "
                                    "per request.", field="events")
        events = data.get("events") if isinstance(data, dict) else None
        try:
            summary = events_import_records(records=events)
        except CrmError as exc:
            errors = [{"row": p["row"], "field": p["field"], "message": p["message"]} for p in exc.problems]
            # No itemised problems: the batch as a whole is wrong (missing, empty, too large).
            return problem_response(exc.message, errors, field="events")
        return Response({"rows": summary.rows, "added": summary.added, "updated": summary.updated,
                         "skipped": summary.skipped, "customers_created": summary.customers_created,
                         "tickets_closed": summary.tickets_closed, "coupons_redeemed": summary.coupons_redeemed},
                        status=status.HTTP_201_CREATED)
