"""Escalation: an alert nobody acted on goes to the owner's manager (or a channel), once."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.models import Alert
from crm_plugin.alerts.escalations import alert_escalations_create
from crm_plugin.alerts.feedback import alert_snooze
from tests.crm_plugin.factories import (
    AccountOwnerFactory,
    ChurnScoreFactory,
    CustomerFactory,
    InterventionFactory,
    ModelVersionFactory,
)

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.CHURN_ESCALATION_DAYS = 3
    settings.CHURN_ESCALATION_CHANNEL = ""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def manager():
    return AccountOwnerFactory(name="Maria", is_manager=True)


def alert_for(customer, *, days_ago: float, status: str = "sent", is_control: bool = False) -> Alert:
    score = ChurnScoreFactory(customer=customer, model_version=ModelVersionFactory(),
                              as_of=NOW - timedelta(days=days_ago), probability=0.82)
    return Alert.objects.create(
        customer=customer, owner=customer.owner, score=score, kind="high_risk", status=status,
        is_control=is_control, idempotency_key=f"risk:{customer.pk}:{score.pk}",
        payload={"probability": 0.82, "band": "high"})


def test_unanswered_alert_escalates_once_to_the_owners_manager(manager):
    owner = AccountOwnerFactory(name="Ana", manager=manager)
    customer = CustomerFactory(owner=owner, name="Bea Quiet")
    alert = alert_for(customer, days_ago=4)
    summary = alert_escalations_create(as_of=NOW)
    [escalation] = Alert.objects.filter(kind="escalation")
    assert summary.escalated == 1 and summary.alert_ids == [escalation.pk]
    assert (escalation.owner, escalation.customer, escalation.status) == (manager, customer, "pending")
    assert escalation.idempotency_key == f"escalation:{alert.pk}"
    assert escalation.payload["owner"] == "Ana" and escalation.payload["days_waiting"] == 4
    # Idempotent: the next sweep (hourly) does not escalate the same alert again.
    assert alert_escalations_create(as_of=NOW + timedelta(hours=1)).escalated == 0
    assert Alert.objects.filter(kind="escalation").count() == 1


def test_not_yet_due_acted_on_snoozed_held_out_or_undelivered_alerts_do_not_escalate(manager):
    owner = AccountOwnerFactory(manager=manager)
    alert_for(CustomerFactory(owner=owner), days_ago=2)  # not yet due
    acted = CustomerFactory(owner=owner)
    alert_for(acted, days_ago=5)
    InterventionFactory(customer=acted, created_at=NOW - timedelta(days=4))
    snoozed = CustomerFactory(owner=owner)
    alert_for(snoozed, days_ago=5)
    alert_snooze(customer=snoozed, by=None, days=7)
    alert_for(CustomerFactory(owner=owner), days_ago=5, status="held_out", is_control=True)
    alert_for(CustomerFactory(owner=owner), days_ago=5, status="failed")
    alert_for(CustomerFactory(owner=owner), days_ago=40)  # far too old to chase now
    assert alert_escalations_create(as_of=NOW).escalated == 0
    assert not Alert.objects.filter(kind="escalation").exists()


def test_an_action_logged_before_the_alert_does_not_count_as_an_answer(manager):
    customer = CustomerFactory(owner=AccountOwnerFactory(manager=manager))
    InterventionFactory(customer=customer, created_at=NOW - timedelta(days=30))
    alert_for(customer, days_ago=4)
    assert alert_escalations_create(as_of=NOW).escalated == 1


def test_without_a_manager_it_goes_to_the_configured_channel_or_is_counted_as_skipped(settings):
    customer = CustomerFactory(owner=AccountOwnerFactory(manager=None))
    alert_for(customer, days_ago=3.5, status="digested")
    summary = alert_escalations_create(as_of=NOW)
    assert (summary.escalated, summary.skipped_no_target) == (0, 1)
    settings.CHURN_ESCALATION_CHANNEL = "C0ESCALATE"
    assert alert_escalations_create(as_of=NOW).escalated == 1
    escalation = Alert.objects.get(kind="escalation")
    assert escalation.owner is None and escalation.payload["channel"] == "C0ESCALATE"


def test_the_delay_is_configurable_and_must_be_positive(manager, settings):
    customer = CustomerFactory(owner=AccountOwnerFactory(manager=manager))
    alert_for(customer, days_ago=2)
    settings.CHURN_ESCALATION_DAYS = 1
    assert alert_escalations_create(as_of=NOW).escalated == 1
    with pytest.raises(CrmError, match="Escalate after at least 1 day, not 0"):
        alert_escalations_create(as_of=NOW, days=0)
