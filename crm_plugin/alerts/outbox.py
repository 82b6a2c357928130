"""The outbox state machine used by delivery: claim a row, mark it sent, release it, fail it, re-send it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.models import Alert


@dataclass(frozen=True)
class AlertClaim:
    """A claimed alert. `uncertain`: an earlier attempt may have reached Slack; look before posting."""

    alert: Alert
    uncertain: bool
    first_claimed_at: datetime


def _delivery_state(alert: Alert) -> dict:
    return dict((alert.payload or {}).get("delivery") or {})


def alert_claim_for_delivery(*, alert_id: int, lease_seconds: int | None = None) -> AlertClaim | None:
    """Move one alert from pending (or an abandoned `sending`) to `sending`, or return None.

    A conditional update on (status, attempts) makes the claim exclusive on every database:
    of two workers racing for the same row exactly one sees its update count as 1.
    """
    lease = timedelta(seconds=lease_seconds if lease_seconds is not None else settings.SLACK_SENDING_LEASE_SECONDS)
    now = timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_for_update(of=("self",)).select_related("owner", "customer", "score").filter(pk=alert_id).first()
        if alert is None:
            return None
        state = _delivery_state(alert)
        uncertain = bool(state.get("uncertain"))
        if alert.status == Alert.Status.SENDING:
            claimed_at = datetime.fromisoformat(state["claimed_at"]) if state.get("claimed_at") else None
            if claimed_at is not None and now - claimed_at < lease:
                return None  # another worker is on it right now
            uncertain = True  # a worker died mid-attempt: it may or may not have posted
        elif alert.status != Alert.Status.PENDING:
            return None
        first = state.get("first_claimed_at") or now.isoformat()
        new_state = {**state, "claimed_at": now.isoformat(), "first_claimed_at": first, "uncertain": uncertain}
        won = Alert.objects.filter(pk=alert.pk, status=alert.status, attempts=alert.attempts).update(
            status=Alert.Status.SENDING, attempts=alert.attempts + 1, payload={**(alert.payload or {}), "delivery": new_state},
        )
        if not won:
            return None
        alert.refresh_from_db()
        return AlertClaim(alert=alert, uncertain=uncertain, first_claimed_at=datetime.fromisoformat(first))


@transaction.atomic
def alert_mark_sent(*, alert: Alert, channel: str, ts: str) -> Alert:
    """Record where the message landed. Only a claimed (`sending`) row can become sent."""
    state = {**_delivery_state(alert), "uncertain": False}
    Alert.objects.filter(pk=alert.pk, status=Alert.Status.SENDING).update(
        status=Alert.Status.SENT, slack_channel=channel, slack_ts=ts, sent_at=timezone.now(), last_error="",
        payload={**(alert.payload or {}), "delivery": state},
    )
    alert.refresh_from_db()
    return alert


@transaction.atomic
def alert_release(*, alert: Alert, error: str, uncertain: bool) -> Alert:
    """Back to pending after a transient failure; `uncertain` when Slack may have posted anyway."""
    state = {**_delivery_state(alert), "uncertain": uncertain or bool(_delivery_state(alert).get("uncertain"))}
    Alert.objects.filter(pk=alert.pk, status=Alert.Status.SENDING).update(
        status=Alert.Status.PENDING, last_error=error[:2000], payload={**(alert.payload or {}), "delivery": state},
    )
    alert.refresh_from_db()
    return alert


@transaction.atomic
def alert_mark_failed(*, alert: Alert, error: str) -> Alert:
    """A permanent failure (no such Slack user, app not in the workspace): an operator must act."""
    Alert.objects.filter(pk=alert.pk, status=Alert.Status.SENDING).update(
        status=Alert.Status.FAILED, last_error=error[:2000],
    )
    alert.refresh_from_db()
    return alert


@transaction.atomic
def alert_resend(*, alert: Alert) -> Alert:
    """Queue a failed alert again (after fixing the cause); sent alerts are never re-sent."""
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status != Alert.Status.FAILED:
        raise CrmError(f"Only failed alerts can be re-sent; this one is {alert.get_status_display().lower()}.",
                       code="not_failed")
    alert.status = Alert.Status.PENDING
    alert.last_error = ""
    alert.save(update_fields=["status", "last_error"])
    return alert


def alert_ids_due_for_delivery(*, lease_seconds: int | None = None) -> list[int]:
    """Pending alerts plus `sending` ones whose worker has gone quiet for longer than the lease."""
    lease = timedelta(seconds=lease_seconds if lease_seconds is not None else settings.SLACK_SENDING_LEASE_SECONDS)
    now = timezone.now()
    ids = list(Alert.objects.filter(status=Alert.Status.PENDING).order_by("created_at", "pk").values_list("pk", flat=True))
    for pk, payload in Alert.objects.filter(status=Alert.Status.SENDING).values_list("pk", "payload"):
        claimed = ((payload or {}).get("delivery") or {}).get("claimed_at")
        if claimed is None or now - datetime.fromisoformat(claimed) >= lease:
            ids.append(pk)
    return ids
