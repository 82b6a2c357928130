"""Reads about alerts for the pages: why a customer got no alert."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from crm_plugin.models import Alert, Customer
from crm_plugin.formatting import day

RISK_KINDS = (Alert.Kind.HIGH_RISK, Alert.Kind.SHARP_RISE)


def alert_silence_reason(*, customer: Customer, alerts: Sequence[Alert], now: datetime | None = None) -> str | None:
    """Why the latest score brought no alert, in the alert policy's own order; None when it did.

    `alerts` are the customer's newest alerts (the page has them already), so this adds no query.
    The policy checks the same things (crm_plugin.alerts.policy._select): a manager reading this
    sees the rule that applied, not a guess.
    """
    now = now or timezone.now()
    score = customer.latest_score
    if score is None:
        return "No alert: not scored yet."
    risk_alerts = [a for a in alerts if a.kind in RISK_KINDS]
    for alert in risk_alerts:
        if alert.score_id == score.pk:
            if alert.is_control:
                share = round(100 * settings.CONTROL_GROUP_SHARE)
                return (f"No alert: held out. This customer is in the control group ({share}% of would-be alerts, "
                        "drawn at random) that tells us whether alerts keep customers.")
            return None
    days = settings.ALERT_MAX_DAYS_SINCE_ORDER
    if customer.lifecycle_stage == Customer.Stage.LAPSED:
        return (f"No alert: lapsed, no order for over {days} days. By the model's own definition this "
                "customer already left; it is a win-back case, not an early warning.")
    if customer.not_a_risk_until and customer.not_a_risk_until > now:
        return f"No alert: marked “not a risk” until {day(customer.not_a_risk_until)}."
    if customer.alerts_snoozed_until and customer.alerts_snoozed_until > now:
        return f"No alert: snoozed until {day(customer.alerts_snoozed_until)}."
    if customer.owner_id is None:
        return "No alert: nobody owns this customer, so there is no one to tell."
    cooldown_start = score.as_of - timedelta(days=settings.ALERT_COOLDOWN_DAYS)
    recent = [a for a in risk_alerts if a.created_at >= cooldown_start and not a.is_control]
    if recent:
        rise = round(100 * settings.ALERT_SHARP_RISE)
        return (f"No new alert: cooldown. Already alerted on {day(recent[0].created_at)}; within "
                f"{settings.ALERT_COOLDOWN_DAYS} days only a further rise of {rise} points alerts again.")
    if score.probability < settings.CHURN_BAND_HIGH:
        return (f"No alert: under the alert line ({100 * score.probability:.0f}% is below "
                f"{100 * settings.CHURN_BAND_HIGH:.0f}%), and no sharp rise.")
    return ("No new alert: already high risk at the previous score. Alerts go out when a customer crosses "
            "into high risk or rises sharply.")
