"""Owners' feedback on a customer's risk: snooze, and "not a risk" (silences alerts for a while)."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from crm_plugin.customers.selectors import customer_list_visible_to
from crm_plugin.errors import CrmError
from crm_plugin.models import Alert, Customer, RiskFeedback

SNOOZE_DAYS_MAX = 365


def _feedback(*, customer: Customer, by: AbstractBaseUser | None, kind: str, days: int, alert: Alert | None,
              field_name: str) -> RiskFeedback:
    if not isinstance(days, int) or not 1 <= days <= SNOOZE_DAYS_MAX:
        raise CrmError(f"Choose between 1 and {SNOOZE_DAYS_MAX} days, not {days!r}.", code="invalid_days")
    if alert is not None and alert.customer_id != customer.pk:
        raise CrmError("That alert is about a different customer.", code="alert_mismatch")
    until = timezone.now() + timedelta(days=days)
    feedback = RiskFeedback.objects.create(customer=customer, alert=alert, kind=kind, until=until, created_by=by)
    Customer.objects.filter(pk=customer.pk).update(**{field_name: until, "updated_at": timezone.now()})
    setattr(customer, field_name, until)
    return feedback


@transaction.atomic
def alert_snooze(*, customer: Customer, by: AbstractBaseUser | None, days: int, alert: Alert | None = None) -> RiskFeedback:
    """No alerts about this customer for `days` days."""
    return _feedback(customer=customer, by=by, kind=RiskFeedback.Kind.SNOOZE, days=days, alert=alert,
                     field_name="alerts_snoozed_until")


@transaction.atomic
def alert_mark_not_a_risk(*, customer: Customer, by: AbstractBaseUser | None, days: int | None = None,
                          alert: Alert | None = None) -> RiskFeedback:
    """The owner knows better: no alerts for `days` (default ALERT_NOT_A_RISK_DAYS)."""
    return _feedback(customer=customer, by=by, kind=RiskFeedback.Kind.NOT_A_RISK,
                     days=days if days is not None else settings.ALERT_NOT_A_RISK_DAYS, alert=alert,
                     field_name="not_a_risk_until")


def alert_snooze_many(*, customer_ids: list[int], by: AbstractBaseUser, days: int) -> int:
    """Snooze every selected customer the user may see (all or none); returns how many."""
    ids = sorted({int(pk) for pk in customer_ids})
    if not ids:
        raise CrmError("Select at least one customer to snooze.", code="nothing_selected")
    with transaction.atomic():
        customers = list(customer_list_visible_to(user=by).filter(pk__in=ids).order_by("pk"))
        if len(customers) != len(ids):
            raise CrmError("Some of the selected customers are not in your book.", code="forbidden")
        for customer in customers:
            alert_snooze(customer=customer, by=by, days=days)
    return len(customers)
