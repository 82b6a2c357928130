"""Alert services besides the policy: re-send, follow-up questions, Slack identity links."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.models import Alert
from crm_plugin.alerts.follow_ups import alert_follow_ups_create
from crm_plugin.alerts.outbox import alert_resend
from crm_plugin.customers.services import account_owner_link_slack
from tests.crm_plugin.factories import AccountOwnerFactory, CustomerFactory, InterventionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_control_group(settings):
    """These tests are about triggers and routing; the control group has its own tests."""
    settings.CONTROL_GROUP_SHARE = 0.0


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_only_failed_alerts_can_be_resent():
    customer = CustomerFactory()
    sent = Alert.objects.create(customer=customer, owner=customer.owner, kind="high_risk", status="sent",
                                idempotency_key="k1")
    with pytest.raises(CrmError, match="Only failed alerts can be re-sent; this one is sent"):
        alert_resend(alert=sent)
    failed = Alert.objects.create(customer=customer, owner=customer.owner, kind="high_risk", status="failed",
                                  idempotency_key="k2", last_error="channel_not_found")
    alert_resend(alert=failed)
    failed.refresh_from_db()
    assert (failed.status, failed.last_error) == ("pending", "")


def test_follow_up_questions_are_queued_once_on_the_due_date_for_open_actions():
    owner = AccountOwnerFactory()
    today = timezone.localdate()
    due = InterventionFactory(customer=CustomerFactory(owner=owner), created_by=owner.user, follow_up_on=today)
    InterventionFactory(customer=CustomerFactory(owner=owner), follow_up_on=today + timedelta(days=1))
    InterventionFactory(customer=CustomerFactory(owner=owner), follow_up_on=today, outcome="retained")
    [alert] = alert_follow_ups_create(today=today)
    assert (alert.kind, alert.owner, alert.customer) == ("follow_up", owner, due.customer)
    assert alert.payload["intervention"] == due.pk and alert.status == "pending"
    due.refresh_from_db()
    assert due.follow_up_sent_at is not None
    assert alert_follow_ups_create(today=today) == []
    assert Alert.objects.filter(kind="follow_up").count() == 1


def test_a_slack_id_belongs_to_one_owner():
    AccountOwnerFactory(slack_user_id="UTAKEN")
    other = AccountOwnerFactory(slack_user_id="")
    with pytest.raises(CrmError, match="already linked to another owner"):
        account_owner_link_slack(owner=other, slack_user_id="UTAKEN")
    account_owner_link_slack(owner=other, slack_user_id="UFREE")
    other.refresh_from_db()
    assert other.slack_user_id == "UFREE"
