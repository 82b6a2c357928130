"""alert_policy_apply: early warnings only for customers who still order; the control group is
drawn among exactly those."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from crm_plugin.models import Alert, ChurnScore, Customer, Event
from crm_plugin.alerts.policy import alert_policy_apply
from mlcore.control_group import control_group_member
from tests.crm_plugin.factories import AccountOwnerFactory, ChurnScoreFactory, CustomerFactory, EventFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

AS_OF = timezone.now().replace(hour=6, minute=0, second=0, microsecond=0)


@pytest.fixture(autouse=True)
def _no_control_group(settings):
    settings.CONTROL_GROUP_SHARE = 0.0
    settings.ALERT_MAX_DAYS_SINCE_ORDER = 90


@pytest.fixture
def version():
    return ModelVersionFactory()


def high_risk(version, *, last_order_days_ago: float | None, first_seen_days_ago: float = 400, **fields) -> Customer:
    """A customer whose first score is high (a crossing), last ordering `last_order_days_ago` before AS_OF."""
    customer = CustomerFactory(first_seen_at=AS_OF - timedelta(days=first_seen_days_ago), **fields)
    if last_order_days_ago is not None:
        EventFactory(customer=customer, occurred_at=AS_OF - timedelta(days=last_order_days_ago + 200))
        EventFactory(customer=customer, occurred_at=AS_OF - timedelta(days=last_order_days_ago))
    ChurnScoreFactory(customer=customer, model_version=version, probability=0.8, band="high", as_of=AS_OF)
    return customer


def alerted() -> set[int]:
    return set(Alert.objects.filter(kind__in=["high_risk", "sharp_rise"]).values_list("customer_id", flat=True))


def test_lapsed_customers_are_not_alerted_active_ones_are(version):
    active = high_risk(version, last_order_days_ago=20)
    edge = high_risk(version, last_order_days_ago=90)
    lapsed = high_risk(version, last_order_days_ago=91)
    long_gone = high_risk(version, last_order_days_ago=300)
    summary = alert_policy_apply(as_of=AS_OF)
    assert alerted() == {active.pk, edge.pk}
    assert (summary.immediate, summary.skipped_lapsed) == (2, 2)
    assert "2 lapsed (no order for over 90 days)" in str(summary)
    # Scores are untouched: the worklist still shows everyone.
    assert ChurnScore.objects.filter(customer__in=[lapsed, long_gone]).count() == 2


def test_only_orders_before_the_scores_count(version):
    customer = high_risk(version, last_order_days_ago=200)
    EventFactory(customer=customer, occurred_at=AS_OF + timedelta(hours=2))  # after the scores were made
    EventFactory(customer=customer, kind=Event.Kind.VISIT, occurred_at=AS_OF - timedelta(days=1))  # not an order
    assert alert_policy_apply(as_of=AS_OF).skipped_lapsed == 1
    assert alerted() == set()


def test_customers_who_never_ordered_count_from_when_they_were_first_seen(version):
    new = high_risk(version, last_order_days_ago=None, first_seen_days_ago=20)
    never = high_risk(version, last_order_days_ago=None, first_seen_days_ago=200)
    summary = alert_policy_apply(as_of=AS_OF)
    assert alerted() == {new.pk} and summary.skipped_lapsed == 1
    assert never.pk not in alerted()


def test_the_limit_is_configurable_and_zero_switches_it_off(version, settings):
    recent = high_risk(version, last_order_days_ago=20)
    month_ago = high_risk(version, last_order_days_ago=45)
    lapsed = high_risk(version, last_order_days_ago=300)
    settings.ALERT_MAX_DAYS_SINCE_ORDER = 30
    assert alert_policy_apply(as_of=AS_OF).skipped_lapsed == 2
    assert alerted() == {recent.pk}
    Alert.objects.all().delete()
    settings.ALERT_MAX_DAYS_SINCE_ORDER = 0
    summary = alert_policy_apply(as_of=AS_OF)
    assert summary.skipped_lapsed == 0 and alerted() == {recent.pk, month_ago.pk, lapsed.pk}
    assert "lapsed" not in str(summary)


def test_lapsed_is_the_reason_recorded_even_inside_a_cooldown(version):
    customer = high_risk(version, last_order_days_ago=150)
    earlier = ChurnScoreFactory(customer=customer, model_version=version, probability=0.7, band="high",
                                as_of=AS_OF - timedelta(days=3))
    Alert.objects.create(customer=customer, owner=customer.owner, score=earlier, kind="high_risk", status="sent",
                         idempotency_key="earlier")
    ChurnScoreFactory(customer=customer, model_version=version, probability=0.3, band="medium",
                      as_of=AS_OF - timedelta(days=1))
    summary = alert_policy_apply(as_of=AS_OF)
    assert (summary.skipped_lapsed, summary.skipped_cooldown) == (1, 0)


def test_the_control_group_is_drawn_among_eligible_customers_only(version, settings):
    settings.CONTROL_GROUP_SHARE = 0.25
    owner = AccountOwnerFactory(daily_alert_cap=1000)
    customers = Customer.objects.bulk_create([
        Customer(external_id=f"H{i:04d}", owner=owner, first_seen_at=AS_OF - timedelta(days=400)) for i in range(600)
    ])
    active = customers[:300]
    Event.objects.bulk_create([
        Event(customer=c, kind=Event.Kind.ORDER, occurred_at=AS_OF - timedelta(days=10 if c in active else 150),
              amount=10, source_id=f"o-{c.pk}")
        for c in customers
    ])
    ChurnScore.objects.bulk_create([
        ChurnScore(customer=c, model_version=version, as_of=AS_OF, probability=0.8, band="high") for c in customers
    ])
    summary = alert_policy_apply(as_of=AS_OF)

    rows = Alert.objects.filter(kind__in=["high_risk", "sharp_rise"])
    assert set(rows.values_list("customer_id", flat=True)) == {c.pk for c in active}  # lapsed: neither told nor held out
    held_out = set(rows.filter(status="held_out", is_control=True).values_list("customer__external_id", flat=True))
    expected = {c.external_id for c in active
                if control_group_member(c.external_id, share=0.25, salt=settings.CONTROL_GROUP_SALT)}
    assert held_out == expected
    assert summary.held_out == len(held_out) and summary.immediate == 300 - len(held_out)
    assert summary.skipped_lapsed == 300
    # The share holds among the eligible (300 draws at 25%: sd 2.5 points).
    assert 0.17 <= len(held_out) / 300 <= 0.33
