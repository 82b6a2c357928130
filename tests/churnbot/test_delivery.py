"""Delivery of outbox alerts through the loopback Slack stand-in: once, and only once."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import SectionBlock

from churnbot import delivery
from churnbot.blocks import alert_message, reasons_text, render
from churnbot.delivery import DeliveryDeferred, alert_deliver
from churnbot.tasks import alerts_queue_pending
from churnbot.tasks import deliver_alert
from crm_plugin.models import Alert
from crm_plugin.alerts.outbox import alert_claim_for_delivery, alert_resend
from crm_plugin.alerts.policy import alert_policy_apply
from tests.churnbot.block_kit import block_kit_problems
from tests.crm_plugin.factories import (
    AccountOwnerFactory, ChurnScoreFactory, CustomerFactory, EventFactory, ModelVersionFactory,
)

pytestmark = pytest.mark.django_db


def make_alerts(n: int = 1, *, owner=None, reasons=None) -> list[Alert]:
    """n customers crossing into high risk at one as_of, turned into outbox rows by the policy."""
    owner = owner or AccountOwnerFactory(name="Ana", slack_user_id="UANA", daily_alert_cap=50)
    as_of = timezone.now().replace(microsecond=0)
    version = ModelVersionFactory()
    for i in range(n):
        customer = CustomerFactory(owner=owner, name=f"Customer {i}")
        EventFactory(customer=customer, occurred_at=as_of - timedelta(days=10))  # still active: alerts are for them
        kwargs = {"reasons": reasons} if reasons is not None else {}
        ChurnScoreFactory(customer=customer, model_version=version, as_of=as_of, probability=0.7 + i / 1000, **kwargs)
    summary = alert_policy_apply(as_of=as_of)
    assert summary.immediate == n
    return list(Alert.objects.filter(pk__in=summary.alert_ids).order_by("pk"))


def deliver_until_done(alert: Alert, *, limit: int = 10) -> tuple[str, list[int]]:
    """What the Celery retries do, without the waiting: returns the outcome and the countdowns asked for."""
    countdowns = []
    for _ in range(limit):
        try:
            return alert_deliver(alert_id=alert.pk), countdowns
        except DeliveryDeferred as deferred:
            countdowns.append(deferred.countdown)
    raise AssertionError(f"not delivered after {limit} attempts: {countdowns}")


def keys_posted(standin) -> list[str]:
    return [m["metadata"]["event_payload"]["alert_key"] for m in standin.posted()]


def test_an_alert_becomes_one_dm_with_blocks_buttons_and_its_key(slack_settings, slack_standin):
    [alert] = make_alerts()
    assert alert_deliver(alert_id=alert.pk) == "sent"
    [message] = slack_standin.posted("DANA")
    assert message["metadata"] == {"event_type": "churn_alert", "event_payload": {"alert_key": alert.idempotency_key}}
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    assert [e["action_id"] for e in actions["elements"]] == [
        "log_action", "snooze_1", "snooze_7", "snooze_30", "not_a_risk", "open_crm"]
    assert actions["elements"][-1]["url"] == f"https://crm.shop.example/customers/{alert.customer_id}/"
    assert "70%" in message["text"]
    alert.refresh_from_db()
    assert (alert.status, alert.slack_channel, alert.slack_ts) == ("sent", "DANA", message["ts"])
    # Delivering again (a duplicate task, the sweep) posts nothing.
    assert alert_deliver(alert_id=alert.pk) == "skipped"
    assert alerts_queue_pending() == 0
    assert len(slack_standin.posted()) == 1


def test_rate_limited_alert_waits_retry_after_and_arrives_exactly_once(slack_settings, slack_standin):
    [alert] = make_alerts()
    slack_standin.fail_next(2, status=429, retry_after=7, method="chat.postMessage")
    outcome, countdowns = deliver_until_done(alert)
    assert outcome == "sent"
    assert countdowns == [7, 7]
    assert keys_posted(slack_standin) == [alert.idempotency_key]
    # Slack refused the 429s outright, so no history search was needed.
    assert slack_standin.calls_to("conversations.history") == []


def test_server_errors_back_off_and_check_history_before_posting_again(slack_settings, slack_standin):
    [alert] = make_alerts()
    slack_standin.fail_next(2, status=500, method="chat.postMessage")
    outcome, countdowns = deliver_until_done(alert)
    assert outcome == "sent"
    assert countdowns == [5, 10]
    assert keys_posted(slack_standin) == [alert.idempotency_key]
    assert len(slack_standin.calls_to("conversations.history")) == 2
    assert slack_standin.calls_to("conversations.history")[0].arg("include_all_metadata") in {"1", "true", True}


def test_post_that_succeeded_but_lost_its_answer_is_not_posted_twice(slack_settings, slack_standin):
    [alert] = make_alerts()
    slack_standin.drop_after_next(1, method="chat.postMessage")
    with pytest.raises(DeliveryDeferred):
        alert_deliver(alert_id=alert.pk)
    alert.refresh_from_db()
    assert alert.status == "pending" and "cannot reach Slack" in alert.last_error
    assert len(slack_standin.posted()) == 1  # it did land
    assert alert_deliver(alert_id=alert.pk) == "found"
    alert.refresh_from_db()
    assert alert.status == "sent" and alert.slack_ts == slack_standin.posted()[0]["ts"]
    assert len(slack_standin.calls_to("chat.postMessage")) == 1
    assert len(slack_standin.posted()) == 1


def test_worker_dying_after_the_post_is_recovered_by_the_sweep_without_a_second_post(
        slack_settings, slack_standin, monkeypatch, django_capture_on_commit_callbacks):
    [alert] = make_alerts()
    real_mark_sent = delivery.alert_mark_sent

    def crash(**kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(delivery, "alert_mark_sent", crash)
    with pytest.raises(SystemExit):
        alert_deliver(alert_id=alert.pk)
    monkeypatch.setattr(delivery, "alert_mark_sent", real_mark_sent)
    alert.refresh_from_db()
    assert alert.status == "sending"
    # Inside the lease the row belongs to the (presumed live) worker.
    assert alerts_queue_pending() == 0
    slack_settings.SLACK_SENDING_LEASE_SECONDS = 0
    with django_capture_on_commit_callbacks(execute=True):
        assert alerts_queue_pending() == 1
    alert.refresh_from_db()
    assert alert.status == "sent"
    assert len(slack_standin.calls_to("chat.postMessage")) == 1
    assert keys_posted(slack_standin) == [alert.idempotency_key]


def test_outage_then_recovery_delivers_every_pending_alert_exactly_once(
        slack_settings, slack_standin, django_capture_on_commit_callbacks):
    alerts = make_alerts(3)
    # Slack unreachable: connection refused on a closed port.
    slack_settings.SLACK_API_BASE_URL = "http://127.0.0.1:9/api/"
    with django_capture_on_commit_callbacks(execute=True):
        assert alerts_queue_pending() == 3
    # Then Slack answers, but with 503s.
    slack_settings.SLACK_API_BASE_URL = slack_standin.api_url
    slack_standin.fail_next(100, status=503)
    with django_capture_on_commit_callbacks(execute=True):
        assert alerts_queue_pending() == 3
    assert slack_standin.posted() == []
    assert set(Alert.objects.filter(kind="high_risk").values_list("status", flat=True)) == {"pending"}
    slack_standin._failures.clear()  # Slack is back
    for _ in range(2):  # the sweep runs again and again; nothing doubles
        with django_capture_on_commit_callbacks(execute=True):
            alerts_queue_pending()
    assert sorted(keys_posted(slack_standin)) == sorted(a.idempotency_key for a in alerts)
    assert set(Alert.objects.filter(kind="high_risk").values_list("status", flat=True)) == {"sent"}


def test_the_task_defers_in_process_and_leaves_the_row_for_the_sweep(slack_settings, slack_standin):
    [alert] = make_alerts()
    slack_standin.fail_next(1, status=429, retry_after=30)
    assert deliver_alert.delay(alert.pk).get() == "deferred"
    alert.refresh_from_db()
    assert alert.status == "pending" and "retry after 30s" in alert.last_error
    assert deliver_alert.delay(alert.pk).get() == "sent"


def test_only_one_claim_wins(slack_settings):
    [alert] = make_alerts()
    assert alert_claim_for_delivery(alert_id=alert.pk) is not None
    assert alert_claim_for_delivery(alert_id=alert.pk) is None


def test_permanent_slack_error_fails_the_alert_until_resent(slack_settings, slack_standin):
    [alert] = make_alerts()
    slack_standin.error_next(1, error="channel_not_found", method="chat.postMessage")
    assert alert_deliver(alert_id=alert.pk) == "failed"
    alert.refresh_from_db()
    assert alert.status == "failed" and "channel_not_found" in alert.last_error
    assert alerts_queue_pending() == 0
    alert_resend(alert=alert)
    assert alert_deliver(alert_id=alert.pk) == "sent"
    assert len(slack_standin.posted()) == 1


def test_owner_without_slack_id_is_found_by_email_once(slack_settings, slack_standin):
    owner = AccountOwnerFactory(name="Cleo", slack_user_id="", email="cleo@shop.example", daily_alert_cap=50)
    slack_standin.users["cleo@shop.example"] = "UCLEO"
    first, second = make_alerts(2, owner=owner)
    assert alert_deliver(alert_id=first.pk) == "sent"
    assert alert_deliver(alert_id=second.pk) == "sent"
    owner.refresh_from_db()
    assert owner.slack_user_id == "UCLEO"
    assert len(slack_standin.calls_to("users.lookupByEmail")) == 1
    assert len(slack_standin.posted("DCLEO")) == 2


def test_owner_unknown_to_slack_fails_with_a_reason(slack_settings, slack_standin):
    owner = AccountOwnerFactory(slack_user_id="", email="ghost@shop.example")
    [alert] = make_alerts(owner=owner)
    assert alert_deliver(alert_id=alert.pk) == "failed"
    alert.refresh_from_db()
    assert "users_not_found" in alert.last_error


def test_console_backend_prints_readable_text_and_records_the_alert(settings, capsys):
    settings.SLACK_BOT_TOKEN = None
    [alert] = make_alerts()
    assert alert_deliver(alert_id=alert.pk) == "sent"
    out = capsys.readouterr().out
    assert "Slack DM to Ana" in out and "Customer 0" in out and "70%" in out
    assert "No order for 64 days; usually orders every 20 days" in out  # in a manager's words, as on the pages
    alert.refresh_from_db()
    assert alert.status == "sent" and alert.slack_channel == "console"


def test_huge_reasons_are_trimmed_to_fit_slacks_limits_instead_of_failing(slack_settings, slack_standin):
    reasons = [{"code": f"r{i}", "text": "x" * 900, "weight": 0.1, "evidence": None} for i in range(5)]
    [alert] = make_alerts(reasons=reasons)
    _, blocks = alert_message(alert)
    assert block_kit_problems(blocks) == []
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    why = next(text for text in sections if text.startswith("*Why*"))
    assert why.count("…") == 5  # each reason cut, all five kept
    assert alert_deliver(alert_id=alert.pk) == "sent"


def test_reasons_that_do_not_fit_end_with_how_many_were_left_out():
    reasons = [{"text": f"reason {i} " + "y" * 200} for i in range(5)]
    text = reasons_text(reasons, limit=500)
    assert len(text) <= 500
    assert text.startswith("• Reason 0") and text.endswith("more_")


def test_block_limits_are_checked_by_slack_sdk_before_sending():
    with pytest.raises(SlackObjectFormationError, match="3000"):
        render([SectionBlock(text="x" * 3001)])


def test_digest_lists_the_rolled_up_customers_in_one_dm(slack_settings, slack_standin):
    owner = AccountOwnerFactory(name="Dora", slack_user_id="UDORA", alert_mode="digest")
    as_of = timezone.now().replace(microsecond=0)
    version = ModelVersionFactory()
    for name, probability in [("Low Lou", 0.61), ("High Hal", 0.93)]:
        customer = CustomerFactory(owner=owner, name=name)
        EventFactory(customer=customer, occurred_at=as_of - timedelta(days=10))
        ChurnScoreFactory(customer=customer, model_version=version, as_of=as_of, probability=probability)
    alert_policy_apply(as_of=as_of)
    digest = Alert.objects.get(kind="digest")
    assert alert_deliver(alert_id=digest.pk) == "sent"
    [message] = slack_standin.posted("DDORA")
    assert message["text"].endswith("2 customers need attention.")
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert "High Hal" in sections[0] and "93%" in sections[0] and "Low Lou" in sections[1]
    assert alerts_queue_pending() == 0  # the digested rows are not sent one by one
