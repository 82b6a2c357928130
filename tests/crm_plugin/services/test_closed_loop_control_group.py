"""The control group inside the alert policy: stable, about the configured share, never delivered."""
from __future__ import annotations

import pytest
from django.utils import timezone

from churnbot.delivery import alert_deliver
from crm_plugin.models import Alert, Customer
from crm_plugin.alerts.outbox import alert_ids_due_for_delivery
from crm_plugin.alerts.policy import alert_policy_apply
from mlcore.control_group import control_group_member
from tests.crm_plugin.factories import AccountOwnerFactory, ChurnScoreFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

AS_OF = timezone.now().replace(hour=6, minute=0, second=0, microsecond=0)


@pytest.fixture(autouse=True)
def _control(settings):
    settings.CONTROL_GROUP_SHARE = 0.10
    settings.CONTROL_GROUP_SALT = "test-experiment"
    settings.SLACK_BOT_TOKEN = ""


def high_risk_customers(n: int, *, prefix: str = "S") -> list[Customer]:
    owner = AccountOwnerFactory(daily_alert_cap=10_000)
    version = ModelVersionFactory()
    customers = Customer.objects.bulk_create(
        [Customer(external_id=f"{prefix}{i:05d}", owner=owner, segment="regular") for i in range(n)])
    for customer in customers:
        ChurnScoreFactory(customer=customer, model_version=version, as_of=AS_OF, probability=0.8, band="high")
    return customers


def test_about_the_configured_share_is_held_out_and_recorded_as_control():
    customers = high_risk_customers(600)
    summary = alert_policy_apply(as_of=AS_OF)
    held = Alert.objects.filter(status="held_out")
    # Binomial(600, 0.1): mean 60, sd 7.3; 35..85 is beyond 3 sd either way.
    assert 35 <= held.count() <= 85
    assert summary.held_out == held.count() and summary.immediate == 600 - held.count()
    assert set(held.values_list("is_control", flat=True)) == {True}
    assert not Alert.objects.filter(status="pending", is_control=True).exists()
    # Exactly the customers the pure assignment function names, no more, no fewer.
    expected = {c.pk for c in customers if control_group_member(c.external_id, share=0.10, salt="test-experiment")}
    assert set(held.values_list("customer_id", flat=True)) == expected
    assert "held out (control group)" in str(summary)


def test_membership_is_stable_per_customer_across_days_and_a_new_salt_reshuffles(settings):
    customers = high_risk_customers(300)
    alert_policy_apply(as_of=AS_OF)
    first = set(Alert.objects.filter(is_control=True).values_list("customer_id", flat=True))
    # A later day with fresh scores for the same customers (past the cooldown): same members.
    later = AS_OF + timezone.timedelta(days=settings.ALERT_COOLDOWN_DAYS + 1)
    version = ModelVersionFactory()
    for customer in customers:
        ChurnScoreFactory(customer=customer, model_version=version, as_of=later - timezone.timedelta(days=1),
                          probability=0.2, band="low")
        ChurnScoreFactory(customer=customer, model_version=version, as_of=later, probability=0.8, band="high")
    alert_policy_apply(as_of=later)
    second = set(Alert.objects.filter(is_control=True, score__as_of=later).values_list("customer_id", flat=True))
    assert first and first == second
    settings.CONTROL_GROUP_SALT = "another-experiment"
    reshuffled = {c.pk for c in customers if control_group_member(c.external_id, share=0.10, salt="another-experiment")}
    assert reshuffled != first


def test_held_out_alerts_are_never_delivered_and_use_no_daily_cap(capsys):
    owner = AccountOwnerFactory(daily_alert_cap=1)
    version = ModelVersionFactory()
    held_key = next(f"H{i}" for i in range(1000) if control_group_member(f"H{i}", share=0.10, salt="test-experiment"))
    sent_key = next(f"H{i}" for i in range(1000) if not control_group_member(f"H{i}", share=0.10, salt="test-experiment"))
    held = Customer.objects.create(external_id=held_key, owner=owner, name="Held Out")
    sent = Customer.objects.create(external_id=sent_key, owner=owner, name="Told About")
    # The held-out customer is the riskier one: it would take the only immediate slot if it counted.
    ChurnScoreFactory(customer=held, model_version=version, as_of=AS_OF, probability=0.95)
    ChurnScoreFactory(customer=sent, model_version=version, as_of=AS_OF, probability=0.7)
    summary = alert_policy_apply(as_of=AS_OF)
    assert (summary.held_out, summary.immediate, summary.digested) == (1, 1, 0)
    held_alert = Alert.objects.get(customer=held)
    assert held_alert.pk not in alert_ids_due_for_delivery()
    assert alert_deliver(alert_id=held_alert.pk) == "skipped"
    held_alert.refresh_from_db()
    assert (held_alert.status, held_alert.sent_at, held_alert.is_control) == ("held_out", None, True)
    assert "Held Out" not in capsys.readouterr().out


def test_share_zero_holds_out_nobody(settings):
    settings.CONTROL_GROUP_SHARE = 0.0
    high_risk_customers(50)
    assert alert_policy_apply(as_of=AS_OF).held_out == 0
    assert not Alert.objects.filter(is_control=True).exists()
