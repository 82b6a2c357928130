"""alert_policy_apply: who gets alerted after a scoring run, and who is left in peace."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.models import AccountOwner, Alert, ChurnScore, Customer
from crm_plugin.alerts.feedback import alert_mark_not_a_risk, alert_snooze
from crm_plugin.alerts.policy import alert_policy_apply
from tests.crm_plugin.factories import (
    AccountOwnerFactory, ChurnScoreFactory, CustomerFactory, EventFactory, ModelVersionFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_control_group(settings):
    """These tests are about triggers and routing; the control group has its own tests."""
    settings.CONTROL_GROUP_SHARE = 0.0

AS_OF = timezone.now().replace(hour=6, minute=0, second=0, microsecond=0)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def version():
    return ModelVersionFactory()


def score(customer: Customer, version, probability: float, *, days_ago: float = 0) -> ChurnScore:
    """A score for a customer who still orders (lapsed customers have their own tests)."""
    if not customer.events.filter(kind="order").exists():
        EventFactory(customer=customer, occurred_at=AS_OF - timedelta(days=30))
    band = "high" if probability >= 0.6 else "medium" if probability >= 0.3 else "low"
    return ChurnScoreFactory(customer=customer, model_version=version, probability=probability, band=band,
                             as_of=AS_OF - timedelta(days=days_ago))


def risk_alerts() -> list[Alert]:
    return list(Alert.objects.filter(kind__in=["high_risk", "sharp_rise"]).order_by("pk"))


def test_crossing_into_high_risk_creates_one_pending_alert_and_a_rerun_creates_nothing(version):
    customer = CustomerFactory()
    score(customer, version, 0.4, days_ago=1)
    today = score(customer, version, 0.65)
    summary = alert_policy_apply(as_of=AS_OF)
    [alert] = risk_alerts()
    assert (alert.kind, alert.status, alert.owner, alert.score) == ("high_risk", "pending", customer.owner, today)
    assert alert.idempotency_key == f"risk:{customer.pk}:{today.pk}"
    assert alert.payload["probability"] == 0.65 and alert.payload["baseline"] == 0.4
    assert alert.payload["reasons"][0]["text"].startswith("no order for 64 days")
    assert summary.immediate == 1
    again = alert_policy_apply(as_of=AS_OF)
    assert again.immediate == 0 and again.already_alerted == 1
    assert len(risk_alerts()) == 1


def test_first_ever_score_in_high_band_alerts(version):
    score(CustomerFactory(), version, 0.9)
    assert alert_policy_apply(as_of=AS_OF).immediate == 1


def test_staying_high_or_staying_medium_is_not_news(version):
    stays_high, stays_medium = CustomerFactory(), CustomerFactory()
    score(stays_high, version, 0.7, days_ago=1)
    score(stays_high, version, 0.75)
    score(stays_medium, version, 0.35, days_ago=1)
    score(stays_medium, version, 0.4)
    assert alert_policy_apply(as_of=AS_OF).immediate == 0
    assert risk_alerts() == []


def test_sharp_rise_within_seven_days_alerts_even_below_high(version):
    customer = CustomerFactory()
    score(customer, version, 0.15, days_ago=6)
    score(customer, version, 0.3, days_ago=3)
    score(customer, version, 0.4)
    alert_policy_apply(as_of=AS_OF)
    [alert] = risk_alerts()
    assert alert.kind == "sharp_rise" and alert.payload["baseline"] == 0.15


def test_a_rise_spread_over_more_than_seven_days_is_not_sharp(version):
    customer = CustomerFactory()
    score(customer, version, 0.1, days_ago=8)
    score(customer, version, 0.25, days_ago=4)
    score(customer, version, 0.4)
    alert_policy_apply(as_of=AS_OF)
    assert risk_alerts() == []


def test_sharp_rise_threshold_is_configurable(version, settings):
    settings.ALERT_SHARP_RISE = 0.1
    customer = CustomerFactory()
    score(customer, version, 0.3, days_ago=2)
    score(customer, version, 0.42)
    alert_policy_apply(as_of=AS_OF)
    assert [a.kind for a in risk_alerts()] == ["sharp_rise"]


def test_cooldown_blocks_a_repeat_unless_risk_rises_sharply_again(version):
    customer = CustomerFactory()
    score(customer, version, 0.4, days_ago=4)
    score(customer, version, 0.62, days_ago=3)
    alert_policy_apply(as_of=AS_OF - timedelta(days=3))
    # Back to medium, then high again three days later: inside the 14-day cooldown.
    score(customer, version, 0.5, days_ago=2)
    score(customer, version, 0.66)
    summary = alert_policy_apply(as_of=AS_OF)
    assert summary.skipped_cooldown == 1 and len(risk_alerts()) == 1
    # A further sharp rise over what was alerted (0.62 -> 0.85) breaks through the cooldown.
    later = AS_OF + timedelta(days=1)
    ChurnScoreFactory(customer=customer, model_version=version, probability=0.85, band="high", as_of=later)
    alert_policy_apply(as_of=later)
    assert [a.kind for a in risk_alerts()] == ["high_risk", "sharp_rise"]


def test_after_the_cooldown_a_new_crossing_alerts_again(version, settings):
    settings.ALERT_COOLDOWN_DAYS = 14
    customer = CustomerFactory()
    score(customer, version, 0.62, days_ago=20)
    alert_policy_apply(as_of=AS_OF - timedelta(days=20))
    score(customer, version, 0.5, days_ago=1)
    score(customer, version, 0.64)
    alert_policy_apply(as_of=AS_OF)
    assert len(risk_alerts()) == 2


def test_snoozed_and_not_a_risk_customers_are_never_alerted_until_it_expires(version):
    snoozed, fine = CustomerFactory(), CustomerFactory()
    alert_snooze(customer=snoozed, by=snoozed.owner.user, days=7)
    alert_mark_not_a_risk(customer=fine, by=fine.owner.user)
    for customer in (snoozed, fine):
        score(customer, version, 0.9)
    summary = alert_policy_apply(as_of=AS_OF)
    assert (summary.skipped_snoozed, summary.skipped_not_a_risk) == (1, 1)
    assert risk_alerts() == []
    fine.refresh_from_db()
    assert fine.not_a_risk_until > timezone.now() + timedelta(days=89)
    assert fine.risk_feedback.get().kind == "not_a_risk"
    # A week and a day later the snooze is over.
    later = AS_OF + timedelta(days=8)
    for customer in (snoozed, fine):
        ChurnScoreFactory(customer=customer, model_version=version, probability=0.5, band="medium",
                          as_of=later - timedelta(days=1))
        ChurnScoreFactory(customer=customer, model_version=version, probability=0.9, band="high", as_of=later)
    alert_policy_apply(as_of=later)
    assert [a.customer for a in risk_alerts()] == [snoozed]


def test_snooze_days_are_checked():
    customer = CustomerFactory()
    with pytest.raises(CrmError, match="between 1 and 365 days"):
        alert_snooze(customer=customer, by=None, days=0)


def test_daily_cap_sends_the_riskiest_and_rolls_the_rest_into_one_digest(version):
    owner = AccountOwnerFactory(daily_alert_cap=2)
    customers = [CustomerFactory(owner=owner) for _ in range(4)]
    for customer, probability in zip(customers, [0.7, 0.95, 0.8, 0.65]):
        score(customer, version, probability)
    summary = alert_policy_apply(as_of=AS_OF)
    assert (summary.immediate, summary.digested, summary.digests) == (2, 2, 1)
    immediate = {a.customer for a in risk_alerts() if a.status == "pending"}
    assert immediate == {customers[1], customers[2]}
    digest = Alert.objects.get(kind="digest")
    assert digest.status == "pending" and digest.owner == owner
    assert digest.idempotency_key == f"digest:{owner.pk}:{timezone.localdate(AS_OF).isoformat()}"
    assert {a.customer for a in digest.digested_alerts.all()} == {customers[0], customers[3]}
    assert set(digest.digested_alerts.values_list("status", flat=True)) == {"digested"}
    assert alert_policy_apply(as_of=AS_OF).immediate == 0
    assert Alert.objects.filter(kind="digest").count() == 1


def test_the_cap_counts_alerts_already_sent_that_day(version):
    owner = AccountOwnerFactory(daily_alert_cap=1)
    first, second = CustomerFactory(owner=owner), CustomerFactory(owner=owner)
    score(first, version, 0.9, days_ago=0.1)
    alert_policy_apply(as_of=AS_OF - timedelta(days=0.1))
    score(second, version, 0.9)
    summary = alert_policy_apply(as_of=AS_OF)
    assert (summary.immediate, summary.digested) == (0, 1)


def test_digest_mode_owners_get_everything_in_the_digest(version):
    owner = AccountOwnerFactory(alert_mode=AccountOwner.AlertMode.DIGEST)
    score(CustomerFactory(owner=owner), version, 0.9)
    summary = alert_policy_apply(as_of=AS_OF)
    assert (summary.immediate, summary.digested, summary.digests) == (0, 1, 1)


def test_customers_without_an_owner_are_counted_not_alerted(version):
    score(CustomerFactory(owner=None), version, 0.9)
    summary = alert_policy_apply(as_of=AS_OF)
    assert summary.skipped_no_owner == 1 and risk_alerts() == []
    assert "1 without owner" in str(summary)


def test_as_of_must_be_timezone_aware():
    with pytest.raises(CrmError, match="timezone-aware"):
        alert_policy_apply(as_of=AS_OF.replace(tzinfo=None))
