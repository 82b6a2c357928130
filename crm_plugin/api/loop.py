"""REST endpoint for the closed loop: measured retention lift, funnel per owner, next-best-action evidence."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_plugin.errors import CrmError
from crm_plugin.models import AccountOwner
from crm_plugin.loop.report import closed_loop_report


class IsManagerOrStaff(permissions.BasePermission):
    """The funnel compares owners, so only managers and staff may read it."""

    message = "Only managers and staff can see the retention lift and the funnel per owner."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return user.is_staff or AccountOwner.objects.filter(user=user, is_manager=True).exists()


class RetentionLiftApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsManagerOrStaff]

    @extend_schema(
        operation_id="retention_lift",
        summary="Measured retention lift (alerted vs held out), funnel per owner, next-best-action evidence",
        parameters=[OpenApiParameter("outcome_days", int, description="days after an alert over which churn is measured")],
        responses={200: dict},
    )
    def get(self, request):
        raw = request.query_params.get("outcome_days")
        outcome_days = None
        if raw is not None:
            try:
                outcome_days = int(raw)
            except ValueError:
                raise ValidationError({"outcome_days": f"A whole number of days, not {raw!r}."}) from None
        try:
            return Response(closed_loop_report(outcome_days=outcome_days))
        except CrmError as exc:
            raise ValidationError({"outcome_days": str(exc)}) from exc

