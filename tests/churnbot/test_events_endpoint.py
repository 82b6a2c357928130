"""The /slack/events endpoint: signature checks, 503 without configuration, CSRF exemption."""
from __future__ import annotations

import time

import pytest

from tests.churnbot.conftest import SlackClient
from tests.crm_plugin.factories import AccountOwnerFactory

pytestmark = pytest.mark.django_db


def test_help_is_answered_to_a_correctly_signed_request(slack):
    response = slack.command("help", user_id="UNOBODY")
    assert response.status_code == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "/churn customer &lt;name, email or id&gt;" in body["blocks"][0]["text"]["text"]  # Slack shows <…>


def test_a_bad_signature_gets_401(slack):
    response = slack.command("help", user_id="U1", secret="not-the-secret")
    assert response.status_code == 401


def test_a_request_older_than_five_minutes_gets_401_even_if_signed_correctly(slack):
    response = slack.command("help", user_id="U1", timestamp=int(time.time()) - 6 * 60)
    assert response.status_code == 401
    assert slack.command("help", user_id="U1", timestamp=int(time.time()) - 4 * 60).status_code == 200


def test_without_a_bot_token_the_endpoint_says_slack_is_not_configured(settings):
    settings.SLACK_BOT_TOKEN = None
    settings.SLACK_SIGNING_SECRET = "x"
    response = SlackClient(response_url="http://127.0.0.1:9/").command("help", user_id="U1")
    assert response.status_code == 503
    assert "SLACK_BOT_TOKEN" in response.content.decode()


def test_unmapped_slack_user_is_told_to_ask_an_admin_and_sees_no_data(slack, slack_standin):
    AccountOwnerFactory(slack_user_id="UOTHER")
    response = slack.command("top", user_id="USTRANGER")
    assert response.status_code == 200
    text = response.json()["text"]
    assert "Ask an admin" in text
    assert "riskiest" not in text
    assert [c.arg("user") for c in slack_standin.calls_to("users.info")] == ["USTRANGER"]


def test_slack_user_is_resolved_once_by_email_and_remembered(slack, slack_standin):
    owner = AccountOwnerFactory(slack_user_id="", email="ana@shop.example")
    slack_standin.users["ana@shop.example"] = "UANA"
    assert "riskiest" in slack.command("top", user_id="UANA").json()["text"]
    assert "riskiest" in slack.command("top", user_id="UANA").json()["text"]
    owner.refresh_from_db()
    assert owner.slack_user_id == "UANA"
    assert len(slack_standin.calls_to("users.info")) == 1


def test_when_slack_cannot_say_who_the_user_is_they_are_asked_to_retry(slack, slack_standin):
    slack_standin.fail_next(5, status=503, method="users.info")
    text = slack.command("top", user_id="UNEW").json()["text"]
    assert "try again in a minute" in text


def test_a_body_that_is_not_utf8_gets_400(slack):
    response = slack.post(b"command=/churn&text=\xff\xfe help")
    assert response.status_code == 400
    assert response.content == b"The request body is not UTF-8."


@pytest.mark.parametrize("timestamp", ["soon", "12.5", "", "\u0661\u0662"])
def test_a_malformed_timestamp_gets_401(slack, timestamp):
    response = slack.post("command=/churn&text=help", timestamp=timestamp)
    assert response.status_code == 401


@pytest.mark.parametrize("body", [
    "payload=not-json",
    "payload=[1, 2]",
    "payload=42",
    '{"type": "block_actions", "user": "U1"',
])
def test_a_signed_body_that_is_not_a_slack_payload_gets_400(slack, body):
    response = slack.post(body)
    assert response.status_code == 400
    assert response.content == b"The request body is not a Slack payload."


@pytest.mark.parametrize("payload, problem", [
    ({"type": "block_actions", "user": {"id": "UANA"}, "actions": "alert_snooze"}, "`actions` is not a list of objects"),
    ({"type": "block_actions", "user": {"id": "UANA"}, "actions": ["alert_snooze"]}, "`actions` is not a list of objects"),
    ({"type": "block_actions", "user": "UANA", "actions": [{"action_id": "alert_snooze", "value": "1::"}]},
     "`user` is not an object"),
    ({"type": "view_submission", "user": {"id": "UANA"}, "view": "log_action"}, "`view` is not an object"),
    ({"type": "view_submission", "user": {"id": "UANA"},
      "view": {"callback_id": "log_action", "private_metadata": "{}", "state": {"values": []}}},
     "`view.state.values` is not blocks of inputs"),
])
def test_a_signed_envelope_of_the_wrong_shape_gets_400_naming_what_is_wrong(slack, payload, problem):
    response = slack.interact(payload)
    assert response.status_code == 400
    assert response.content.decode() == f"The request body is not a Slack payload: {problem}."


def test_a_real_shaped_envelope_with_team_null_still_reaches_the_listeners(slack):
    response = slack.interact({"type": "block_actions", "team": None, "user": {"id": "UNOBODY"}, "actions": [
        {"action_id": "snooze_7", "block_id": "b", "type": "button", "value": "not-a-value", "action_ts": "1.2"}],
        "response_url": slack.response_url, "container": {"type": "message", "channel_id": "D1", "message_ts": "1.1"}})
    assert response.status_code == 200
