"""Escalation: an alert nobody acted on goes once to the owner's manager (or a channel)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from crm_plugin.alerts.policy import RISK_KINDS
from crm_plugin.errors import CrmError
from crm_plugin.models import Alert, Intervention, RiskFeedback


# Alerts older than this (beyond the escalation delay) are not escalated any more: turning the
# feature on, or a long outage, must not flood managers with stale cases.
ESCALATION_LOOKBACK_DAYS = 7


@dataclass
class EscalationSummary:
    """What one escalation sweep did."""

    escalated: int = 0
    skipped_no_target: int = 0
    alert_ids: list[int] = field(default_factory=list)


def _alert_time(alert: Alert) -> datetime:
    return alert.score.as_of if alert.score_id and alert.score else alert.created_at


@transaction.atomic
def alert_escalations_create(*, as_of: datetime | None = None, days: int | None = None) -> EscalationSummary:
    """Escalate alerts nobody acted on within `days` (CHURN_ESCALATION_DAYS) to the owner's manager.

    Delivered risk alerts (sent, or rolled into a digest) count; held-out ones never (nobody was
    told). "Acted on" means an intervention logged for the customer, or a snooze / not-a-risk
    answer, since the alert. The target is the owner's manager by DM, else the channel
    CHURN_ESCALATION_CHANNEL; with neither the alert is counted as skipped. Once per alert
    (idempotency key `escalation:<alert id>`), delivered by the same outbox as every alert.
    """
    as_of = as_of or timezone.now()
    if timezone.is_naive(as_of):
        raise CrmError("as_of must be timezone-aware.", code="naive_datetime")
    days = settings.CHURN_ESCALATION_DAYS if days is None else days
    if not isinstance(days, int) or days < 1:
        raise CrmError(f"Escalate after at least 1 day, not {days!r}.", code="invalid_days")
    due_before = as_of - timedelta(days=days)
    not_before = due_before - timedelta(days=ESCALATION_LOOKBACK_DAYS)
    candidates = (
        Alert.objects.filter(kind__in=RISK_KINDS, status__in=(Alert.Status.SENT, Alert.Status.DIGESTED),
                             is_control=False, customer__isnull=False, owner__isnull=False,
                             score__as_of__lte=due_before, score__as_of__gt=not_before)
        .select_related("customer", "owner", "owner__manager", "score")
        .order_by("score__as_of", "pk")
    )
    summary = EscalationSummary()
    channel = settings.CHURN_ESCALATION_CHANNEL
    done = set(Alert.objects.filter(kind=Alert.Kind.ESCALATION, idempotency_key__startswith="escalation:")
               .values_list("idempotency_key", flat=True))
    for alert in candidates:
        if f"escalation:{alert.pk}" in done:
            continue
        since = _alert_time(alert)
        acted = Intervention.objects.filter(customer_id=alert.customer_id, created_at__gte=since).exists()
        answered = RiskFeedback.objects.filter(customer_id=alert.customer_id, created_at__gte=since).exists()
        if acted or answered:
            continue
        manager = alert.owner.manager if alert.owner.manager_id != alert.owner_id else None
        if manager is None and not channel:
            summary.skipped_no_target += 1
            continue
        waited = (as_of - since).days
        payload = {
            "alert": alert.pk, "owner": alert.owner.name, "owner_id": alert.owner_id,
            "trigger": alert.kind, "alerted_on": timezone.localdate(since).isoformat(), "days_waiting": waited,
            "probability": (alert.payload or {}).get("probability"), "band": (alert.payload or {}).get("band"),
            "channel": "" if manager is not None else channel,
        }
        escalation, created = Alert.objects.get_or_create(
            idempotency_key=f"escalation:{alert.pk}",
            defaults=dict(customer=alert.customer, owner=manager, kind=Alert.Kind.ESCALATION, payload=payload),
        )
        if created:
            summary.escalated += 1
            summary.alert_ids.append(escalation.pk)
    return summary
