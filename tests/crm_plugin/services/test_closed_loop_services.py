"""Lift, funnel and next-best action read from the database (alerts, actions, orders, outcomes)."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from churnbot.blocks import alert_message, customer_card
from churnbot.queries import customer_card_data
from crm_plugin.models import Alert, ChurnScore, Customer, Event, Intervention
from crm_plugin.alerts.policy import alert_policy_apply
from crm_plugin.loop.report import (
    alert_episodes,
    alert_funnel_by_owner,
    closed_loop_report,
    next_best_action_for,
    retention_lift_measured,
)
from tests.crm_plugin.factories import AccountOwnerFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)
ALERTED = NOW - timedelta(days=40)


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.CHURN_OUTCOME_DAYS = 30
    settings.CHURN_ESCALATION_DAYS = 3
    settings.UPLIFT_MIN_N = 30
    settings.CONTROL_GROUP_SHARE = 0.0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def world(*, owner, version, segment: str, n: int, churned: int, control: bool, action: str | None,
          recorded: bool = False, prefix: str) -> list[Customer]:
    """n customers alerted 40 days ago; the first `churned` of them place no order afterwards."""
    customers = Customer.objects.bulk_create([
        Customer(external_id=f"{prefix}{i:04d}", owner=owner, segment=segment, value=Decimal("500")) for i in range(n)])
    scores = ChurnScore.objects.bulk_create([
        ChurnScore(customer=c, model_version=version, as_of=ALERTED, probability=0.8, band="high") for c in customers])
    Alert.objects.bulk_create([
        Alert(customer=c, owner=owner, score=s, kind="high_risk", status="held_out" if control else "sent",
              is_control=control, idempotency_key=f"risk:{c.pk}:{s.pk}") for c, s in zip(customers, scores)])
    events, interventions = [], []
    for i, c in enumerate(customers):
        gone = i < churned
        if not gone:
            events.append(Event(customer=c, kind="order", occurred_at=ALERTED + timedelta(days=10), amount=Decimal("30"),
                                source_id=f"o-{c.external_id}"))
        if action:
            interventions.append(Intervention(
                customer=c, action=action, created_at=ALERTED + timedelta(days=1), source="simulation",
                outcome=("churned" if gone else "retained") if recorded else "",
                outcome_at=ALERTED + timedelta(days=30) if recorded else None))
    Event.objects.bulk_create(events)
    Intervention.objects.bulk_create(interventions)
    return customers


@pytest.fixture
def shop():
    owner = AccountOwnerFactory(name="Ana")
    version = ModelVersionFactory()
    # Held out: 20 of 50 churn (40%). Coupon: 10 of 50 (20%), outcomes recorded. Alerted, untouched: 18 of 40.
    world(owner=owner, version=version, segment="regular", n=50, churned=20, control=True, action=None, prefix="H")
    world(owner=owner, version=version, segment="regular", n=50, churned=10, control=False, action="coupon",
          recorded=True, prefix="K")
    world(owner=owner, version=version, segment="regular", n=40, churned=18, control=False, action=None, prefix="U")
    return owner


def test_episodes_take_recorded_outcomes_and_fall_back_to_behaviour(shop):
    frame = alert_episodes(as_of=NOW)
    assert len(frame) == 140
    assert set(frame.loc[frame["action"] == "coupon", "outcome_source"]) == {"recorded"}
    assert set(frame.loc[frame["action"].isna(), "outcome_source"]) == {"behaviour"}
    # Before the 30-day window has closed nothing is known yet.
    assert len(alert_episodes(as_of=ALERTED + timedelta(days=20))) == 50  # only the recorded coupon outcomes


def test_measured_lift_overall_and_per_action_with_intervals(shop):
    lift = retention_lift_measured(as_of=NOW)
    overall = lift.overall
    assert (overall.treated_n, overall.treated_churned, overall.control_n, overall.control_churned) == (90, 28, 50, 20)
    assert overall.absolute_lift == pytest.approx(0.40 - 28 / 90)
    coupon = lift.by_action["coupon"]
    assert coupon.absolute_lift == pytest.approx(0.20) and coupon.enough_data
    assert coupon.lift_low < 0.20 < coupon.lift_high and coupon.clearly_positive
    assert "20.0% of coupon churned (n=50) vs 40.0% held out (n=50)" in closed_loop_report(as_of=NOW)["lift_text"]["by_action"]["coupon"]


def test_lift_says_when_there_is_not_enough_data():
    lift = retention_lift_measured(as_of=NOW)
    assert not lift.overall.enough_data
    assert "only 0 held-out customers (need 30)" in lift.overall.reason


def test_funnel_per_owner_counts_alerts_actions_and_outcomes(shop):
    [row] = alert_funnel_by_owner(as_of=NOW)
    assert (row.owner, row.alerts, row.acted, row.acted_in_time) == ("Ana", 90, 50, 50)
    assert (row.outcomes_known, row.retained, row.churned) == (50, 40, 10)
    assert row.acted_share == pytest.approx(50 / 90)


def test_next_best_action_carries_its_evidence_into_the_alert_and_the_card(shop, settings):
    customer = Customer.objects.create(external_id="NEW1", owner=shop, segment="regular", value=Decimal("500"),
                                       name="Nia New")
    recommendation = next_best_action_for(customer=customer)
    assert recommendation.action == "coupon"
    assert recommendation.evidence_text.startswith("coupon: 80% kept vs 60% held out, n=50")
    version = ModelVersionFactory()
    ChurnScore.objects.create(customer=customer, model_version=version, as_of=NOW - timedelta(days=1), probability=0.1, band="low")
    ChurnScore.objects.create(customer=customer, model_version=version, as_of=NOW, probability=0.8, band="high")
    summary = alert_policy_apply(as_of=NOW)
    alert = Alert.objects.get(pk=summary.alert_ids[0])
    assert alert.payload["next_best_action"]["action"] == "coupon"
    text, blocks = alert_message(alert)
    assert any("Suggested next step:* coupon — coupon: 80% kept vs 60% held out" in str(b) for b in blocks)
    _, card_blocks = customer_card(customer_card_data(customer=customer))
    assert any("Suggested next step:* coupon" in str(b) for b in card_blocks)


def test_without_evidence_the_alert_says_there_is_no_suggestion_yet():
    owner = AccountOwnerFactory()
    customer = Customer.objects.create(external_id="LONE", owner=owner, segment="vip")
    ChurnScore.objects.create(customer=customer, model_version=ModelVersionFactory(), as_of=NOW, probability=0.9, band="high")
    alert = Alert.objects.get(pk=alert_policy_apply(as_of=NOW).alert_ids[0])
    assert alert.payload["next_best_action"]["action"] is None
    assert "No recommendation yet" in alert.payload["next_best_action"]["evidence"]


def test_lift_api_needs_a_manager_or_staff_and_returns_lift_and_funnel(shop):
    from rest_framework.test import APIRequestFactory, force_authenticate

    from crm_plugin.api.loop import RetentionLiftApi

    view = RetentionLiftApi.as_view()
    factory = APIRequestFactory()
    assert view(factory.get("/api/lift/")).status_code in (401, 403)
    request = factory.get("/api/lift/")
    force_authenticate(request, user=shop.user)  # an account manager, not a manager
    response = view(request)
    assert response.status_code == 403 and "Only managers and staff" in str(response.data)
    boss = AccountOwnerFactory(is_manager=True)
    request = factory.get("/api/lift/", {"outcome_days": "30"})
    force_authenticate(request, user=boss.user)
    data = view(request).data
    assert data["lift"]["by_action"]["coupon"]["enough_data"] is True
    assert data["funnel"][0]["owner"] == "Ana" and data["funnel"][0]["acted"] == 50
    request = factory.get("/api/lift/", {"outcome_days": "soon"})
    force_authenticate(request, user=boss.user)
    response = view(request)
    assert response.status_code == 400 and "A whole number of days" in str(response.data)
