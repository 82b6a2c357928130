"""What an alert DM tells a manager at a glance: value, last order, segment, stage, the way to the score history."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from churnbot.blocks import alert_console_text, alert_message, change
from churnbot.delivery import alert_deliver
from crm_plugin.models import Alert, Customer
from tests.churnbot.block_kit import block_kit_problems
from tests.churnbot.test_delivery import make_alerts
from tests.crm_plugin.factories import AccountOwnerFactory, CustomerFactory, EventFactory

pytestmark = pytest.mark.django_db


def _fields(blocks: list[dict]) -> list[str]:
    [fields] = [b["fields"] for b in blocks if b["type"] == "section" and "fields" in b]
    return [f["text"] for f in fields]


def _button(blocks: list[dict], action_id: str) -> dict:
    actions = next(b for b in blocks if b["type"] == "actions")
    return next(e for e in actions["elements"] if e["action_id"] == action_id)


def test_the_dm_shows_yearly_value_in_the_shops_currency_last_order_segment_and_stage(slack_settings, slack_standin):
    slack_settings.SHOP_CURRENCY = "GBP"
    [alert] = make_alerts()
    ordered = timezone.now() - timedelta(days=3)  # after the order make_alerts gives each customer
    EventFactory(customer=alert.customer, occurred_at=ordered, amount=Decimal("1234.5"))
    Customer.objects.filter(pk=alert.customer_id).update(value=Decimal("4844.40"), segment="vip",
                                                         lifecycle_stage="at_risk")
    assert alert_deliver(alert_id=alert.pk) == "sent"
    [message] = slack_standin.posted("DANA")
    day = timezone.localdate(ordered)
    assert _fields(message["blocks"]) == [
        "*Yearly value*\n£4,844",
        f"*Last order*\n{day.day} {day:%b %Y} · £1,234.50\n3 days ago",
        "*Segment*\nvip",
        "*Stage*\nAt risk",
    ]
    # Right under the headline, before the reasons.
    kinds = [("fields" if "fields" in b else b["type"]) for b in message["blocks"]]
    assert kinds[:4] == ["header", "section", "fields", "section"]


def test_a_customer_without_orders_segment_or_stage_says_so(slack_settings):
    [alert] = make_alerts()
    alert.customer.events.all().delete()
    Customer.objects.filter(pk=alert.customer_id).update(segment="", lifecycle_stage="")
    alert.customer.refresh_from_db()
    _, blocks = alert_message(alert)
    assert _fields(blocks) == ["*Yearly value*\n€0", "*Last order*\nnone recorded", "*Segment*\n–",
                               "*Stage*\nnot scored yet"]


def test_the_dm_links_the_score_history_on_the_customer_page(slack_settings):
    [alert] = make_alerts()
    _, blocks = alert_message(alert)
    footer = blocks[-1]["elements"][0]["text"]
    assert f"<https://crm.shop.example/customers/{alert.customer_id}/#history|Score history>" in footer
    assert footer.endswith(f"alert #{alert.pk}")
    # Still there once the buttons are replaced by what was done.
    _, blocks = alert_message(alert, footer="Logged: call by <@UANA>")
    assert "/#history|Score history>" in blocks[-1]["elements"][0]["text"]


def test_the_console_backend_prints_the_same_facts(slack_settings):
    slack_settings.SLACK_BOT_TOKEN = None
    [alert] = make_alerts()
    Customer.objects.filter(pk=alert.customer_id).update(value=Decimal("980"), segment="new", lifecycle_stage="active")
    alert.customer.refresh_from_db()
    text = alert_console_text(alert)
    assert "Yearly value €980 · last order" in text and "(10 days ago) · segment new · stage Active" in text
    assert f"/customers/{alert.customer_id}/#history" in text


def test_an_alert_with_every_text_at_its_longest_stays_within_block_kit_limits(slack_settings, slack_standin):
    owner = AccountOwnerFactory(name="Ana", slack_user_id="UANA", daily_alert_cap=50)
    reasons = [{"code": f"r{i}", "text": "<&>" * 400, "weight": 0.1} for i in range(5)]
    [alert] = make_alerts(owner=owner, reasons=reasons)
    Customer.objects.filter(pk=alert.customer_id).update(
        name="&" * 200, external_id="<" * 128, segment="&" * 64, value=Decimal("999999999999.99"))
    alert.refresh_from_db()
    text, blocks = alert_message(alert)
    assert block_kit_problems(blocks) == []
    confirm = _button(blocks, "not_a_risk")["confirm"]
    assert len(confirm["text"]["text"]) <= 300
    assert alert_deliver(alert_id=alert.pk) == "sent"


def test_the_limit_checker_catches_what_slack_would_refuse():
    # The checks above are only worth something if the checker complains about a broken limit.
    assert block_kit_problems([{"type": "section", "fields": [{"type": "mrkdwn", "text": "x"}] * 11}])
    assert block_kit_problems([{"type": "section", "fields": [{"type": "mrkdwn", "text": "x" * 2001}]}])
    confirm = {"title": {"type": "plain_text", "text": "t"}, "text": {"type": "plain_text", "text": "x" * 301},
               "confirm": {"type": "plain_text", "text": "ok"}, "deny": {"type": "plain_text", "text": "no"}}
    assert block_kit_problems([{"type": "actions", "elements": [
        {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "b"}, "confirm": confirm}]}])


def test_counts_of_one_read_in_the_singular(slack_settings):
    owner = AccountOwnerFactory(name="Ana", slack_user_id="UANA")
    customer = CustomerFactory(owner=owner, name="Una")
    escalation = Alert.objects.create(customer=customer, owner=owner, kind="escalation", idempotency_key="e1", payload={
        "owner": "Ana", "alerted_on": "2026-11-30", "days_waiting": 1, "probability": 0.8, "alert": 1})
    text, blocks = alert_message(escalation)
    assert "(1 day ago)" in text and "(1 day ago)" in str(blocks)
    digest = Alert.objects.create(customer=customer, owner=owner, kind="digest", idempotency_key="d1",
                                  payload={"date": "2026-12-01"})
    item = Alert.objects.create(customer=customer, owner=owner, kind="high_risk", idempotency_key="h1",
                                payload={"probability": 0.8, "band": "high"}, status="digested", digest=digest)
    text, _ = alert_message(digest, digest_items=[item])
    assert text.endswith(": 1 customer needs attention.")
    assert "Daily churn digest 2026-12-01: 1 customer\n" in alert_console_text(digest, digest_items=[item]) + "\n"
    assert change(0.01) == "▲ +1 pt" and change(-0.012) == "▼ -1 pt" and change(0.02) == "▲ +2 pts"
    EventFactory(customer=customer, occurred_at=timezone.now() - timedelta(days=1))
    _, blocks = alert_message(Alert.objects.create(customer=customer, owner=owner, kind="high_risk",
                                                   idempotency_key="h2", payload={"probability": 0.8}))
    assert _fields(blocks)[1].endswith("\nyesterday")


def test_the_console_and_digest_lines_read_reasons_in_a_managers_words(slack_settings):
    [alert] = make_alerts()
    raw = [{"code": "coupons", "text": "0 coupons in the last year, 0 redeemed", "weight": 0.4, "evidence": {}},
           {"code": "orders_down", "text": "1 orders in the last 90 days (1 in the last year)", "weight": 0.3,
            "evidence": {"orders_90": 1, "orders_365": 1}},
           {"code": "spend_down", "text": "spent 64.72 in the last 90 days", "weight": 0.2,
            "evidence": {"spend_90": 64.72, "spend_365": 130}}]
    alert.payload = {**alert.payload, "reasons": raw}
    text = alert_console_text(alert)
    assert "coupons" not in text and "1 orders" not in text  # nothing a manager can act on
    assert "• Spent €65 in the last 90 days (€130 in the year)" in text
