"""Escalations go out through the same outbox: a manager's DM, or a configured channel."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from churnbot.delivery import alert_deliver
from crm_plugin.models import Alert
from crm_plugin.alerts.escalations import alert_escalations_create
from tests.crm_plugin.factories import AccountOwnerFactory, ChurnScoreFactory, CustomerFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db


def stale_alert(owner) -> Alert:
    customer = CustomerFactory(owner=owner, name="Bea Quiet")
    score = ChurnScoreFactory(customer=customer, model_version=ModelVersionFactory(),
                              as_of=timezone.now() - timedelta(days=4), probability=0.82)
    return Alert.objects.create(customer=customer, owner=owner, score=score, kind="high_risk", status="sent",
                                idempotency_key=f"risk:{customer.pk}:{score.pk}", payload={"probability": 0.82, "band": "high"})


def test_escalation_reaches_the_managers_dm_with_who_was_told_and_when(slack_settings, slack_standin):
    manager = AccountOwnerFactory(name="Maria", slack_user_id="UMARIA", is_manager=True)
    stale_alert(AccountOwnerFactory(name="Ana", manager=manager))
    [escalation_id] = alert_escalations_create().alert_ids
    assert alert_deliver(alert_id=escalation_id) == "sent"
    [message] = slack_standin.posted("DMARIA")
    assert "No action yet: Bea Quiet" in message["text"] and "alerted to Ana" in message["text"]
    assert "4 days ago" in message["text"] and "82%" in message["text"]
    assert message["metadata"]["event_payload"]["alert_key"].startswith("escalation:")


def test_escalation_without_a_manager_is_posted_to_the_channel(slack_settings, slack_standin):
    slack_settings.CHURN_ESCALATION_CHANNEL = "C0ESCALATE"
    stale_alert(AccountOwnerFactory(name="Ana", manager=None))
    [escalation_id] = alert_escalations_create().alert_ids
    assert alert_deliver(alert_id=escalation_id) == "sent"
    [message] = slack_standin.posted("C0ESCALATE")
    assert "No action yet: Bea Quiet" in message["text"]
    assert Alert.objects.get(pk=escalation_id).slack_channel == "C0ESCALATE"
