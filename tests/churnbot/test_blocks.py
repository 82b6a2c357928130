"""Every message's top-level text (the notification) is escaped like its blocks: names cannot ping or inject."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from churnbot.blocks import alert_console_text, alert_message, escape, help_message
from churnbot.delivery import alert_deliver
from crm_plugin.models import Alert, Customer
from tests.churnbot.test_churn_command import _scored
from tests.crm_plugin.factories import (
    AccountOwnerFactory, ChurnScoreFactory, CustomerFactory, InterventionFactory, ModelVersionFactory,
)

pytestmark = pytest.mark.django_db

NASTY = "<!channel> <script>alert(1)</script> & co"
ESCAPED = "&lt;!channel&gt; &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"


def mrkdwn_texts(blocks: list[dict]) -> list[str]:
    """Every text Slack parses as mrkdwn (plain_text, e.g. headers, shows < and > literally)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


def assert_escaped(text: str, blocks: list[dict]) -> None:
    assert ESCAPED in text
    for part in [text, *mrkdwn_texts(blocks)]:
        assert "<!channel>" not in part and "<script>" not in part and "& co" not in part


@pytest.fixture
def nasty(slack_settings):
    owner = AccountOwnerFactory(name=NASTY, slack_user_id="UANA", daily_alert_cap=50)
    customer = CustomerFactory(owner=owner, name=NASTY, segment=NASTY)
    score = ChurnScoreFactory(customer=customer, model_version=ModelVersionFactory(), probability=0.9, band="high",
                              as_of=timezone.now() - timedelta(days=4))
    Customer.objects.filter(pk=customer.pk).update(latest_score=score, lifecycle_stage="at_risk")  # as scoring stages it
    customer.refresh_from_db()
    return customer


def outbox(customer, kind: str, payload: dict, **kwargs) -> Alert:
    return Alert.objects.create(customer=customer, owner=customer.owner, kind=kind, payload=payload,
                                idempotency_key=f"{kind}:{customer.pk}:{len(payload)}", **kwargs)


def test_a_high_risk_dm_with_a_nasty_name_is_escaped_in_the_notification_and_the_blocks(nasty, slack_standin):
    alert = outbox(nasty, "high_risk", {"probability": 0.9, "baseline": 0.4, "band": "high",
                                        "reasons": [{"text": NASTY}]})
    assert alert_deliver(alert_id=alert.pk) == "sent"
    [message] = slack_standin.posted("DANA")
    assert_escaped(message["text"], message["blocks"])
    assert message["text"].startswith(ESCAPED + " (")


@pytest.mark.parametrize("kind,payload", [
    ("sharp_rise", {"probability": 0.9, "baseline": 0.5, "band": "high"}),
    ("escalation", {"owner": NASTY, "alerted_on": "2026-11-20", "days_waiting": 4, "probability": 0.9, "alert": 1}),
    ("follow_up", {"intervention": 1, "action": "call", "note": NASTY, "logged_on": "2026-11-20"}),
])
def test_every_alert_kind_escapes_its_notification(nasty, kind, payload):
    text, blocks = alert_message(outbox(nasty, kind, payload))
    assert_escaped(text, blocks)
    # The buttons replaced by a footer (after a press) keep the same escaped notification.
    text, blocks = alert_message(outbox(nasty, kind, {**payload, "x": 1}), footer="Logged: call by <@UANA>")
    assert_escaped(text, blocks)


def test_the_digest_escapes_its_customers(nasty):
    item = outbox(nasty, "high_risk", {"probability": 0.9, "band": "high", "reasons": [{"text": NASTY}]},
                  status="digested")
    digest = outbox(nasty, "digest", {"date": NASTY})
    text, blocks = alert_message(digest, digest_items=[item])
    assert_escaped(text, blocks)


def test_the_console_backend_prints_the_name_as_it_is(nasty):
    alert = outbox(nasty, "high_risk", {"probability": 0.9, "band": "high"})
    assert NASTY in alert_console_text(alert)


def test_the_customer_card_top_list_and_help_escape_names_and_input(slack, nasty):
    InterventionFactory(customer=nasty, note=NASTY)
    _scored(CustomerFactory(owner=nasty.owner, name="Calm Carl"), [(0, 0.1)], ModelVersionFactory())
    card = slack.command(f"customer {nasty.external_id}", user_id="UANA").json()
    assert_escaped(card["text"], card["blocks"])
    top = slack.command("top", user_id="UANA").json()
    assert top["text"] == "Your 10 riskiest customers: 1 customer"  # Calm Carl is not at risk
    assert [t for t in mrkdwn_texts(top["blocks"]) if ESCAPED in t]
    assert not [t for t in mrkdwn_texts(top["blocks"]) if "<!channel>" in t or "<script>" in t]
    help_ = slack.command(f"top {NASTY}", user_id="UANA").json()
    assert "<!channel>" not in help_["text"] and "&lt;!channel&gt;" in help_["text"]
    assert help_["text"].endswith("Usage: /churn customer &lt;name, email or id&gt; | top [N] | help")


def test_a_managers_top_list_escapes_the_owners_name_in_its_title(slack, nasty):
    AccountOwnerFactory(name="Boss", slack_user_id="UBOSS", is_manager=True)
    body = slack.command(f"top @{nasty.owner.email}", user_id="UBOSS").json()
    assert body["text"] == f"{ESCAPED}'s 10 riskiest customers: 1 customer"


def test_help_escapes_the_problem_it_quotes():
    text, blocks = help_message(f"Unknown subcommand `{NASTY}`.")
    assert_escaped(text, blocks)
    assert json.dumps(blocks).count("&lt;name, email or id&gt;") == 1
    assert escape("a < b & c > d") == "a &lt; b &amp; c &gt; d"


def test_the_new_owner_is_told_about_customers_moved_into_their_book(nasty, slack_standin):
    from crm_plugin.customers.services import customer_reassign
    from tests.crm_plugin.factories import AccountOwnerFactory, UserFactory

    manager = AccountOwnerFactory(name="Maria", is_manager=True, user=UserFactory(username="maria"))
    ben = AccountOwnerFactory(name="Ben", slack_user_id="UBEN")
    done = customer_reassign(customer_ids=[nasty.pk], owner=ben, by=manager.user)
    assert alert_deliver(alert_id=done.notice.pk) == "sent"
    [message] = slack_standin.posted("DBEN")
    assert message["text"] == "maria assigned 1 customer to you."
    blocks = str(message["blocks"])
    assert "1 customer assigned to you" in blocks and ESCAPED in blocks and "<script>" not in blocks
