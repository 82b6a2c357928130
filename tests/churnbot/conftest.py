"""Fixtures for the Slack tests: the loopback Web API stand-in, Slack settings, signed requests."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from django.test import Client

from churnbot.delivery import alert_deliver
from tests.churnbot.slack_standin import SlackStandin
from tests.churnbot.test_delivery import make_alerts

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"


@pytest.fixture(autouse=True)
def _no_control_group(settings):
    """Slack tests expect every triggered alert to be delivered; the control group has its own tests."""
    settings.CONTROL_GROUP_SHARE = 0.0


@pytest.fixture
def slack_standin():
    standin = SlackStandin().start()
    yield standin
    standin.stop()


@pytest.fixture
def slack_settings(settings, slack_standin):
    """A configured Slack app whose Web API calls go to the stand-in."""
    settings.SLACK_BOT_TOKEN = BOT_TOKEN
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    settings.SLACK_API_BASE_URL = slack_standin.api_url
    settings.SITE_URL = "https://crm.shop.example"
    return settings


def sign(body: str | bytes, timestamp: int | str, secret: str = SIGNING_SECRET) -> str:
    """Slack's v0 signature: HMAC-SHA256 of `v0:{timestamp}:{body}`, hex, prefixed `v0=`."""
    base = f"v0:{timestamp}:".encode() + (body if isinstance(body, bytes) else body.encode())
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackClient:
    """Posts to /slack/events through Django's test client (CSRF checks on), signed like Slack."""

    def __init__(self, response_url: str):
        self.http = Client(enforce_csrf_checks=True)
        self.response_url = response_url

    def post(self, body: str | bytes, *, timestamp: int | str | None = None, secret: str = SIGNING_SECRET,
             signature: str | None = None):
        timestamp = int(time.time()) if timestamp is None else timestamp
        return self.http.post(
            "/slack/events", data=body, content_type="application/x-www-form-urlencoded",
            HTTP_X_SLACK_REQUEST_TIMESTAMP=str(timestamp),
            HTTP_X_SLACK_SIGNATURE=signature or sign(body, timestamp, secret),
        )

    def command(self, text: str, *, user_id: str, **kwargs):
        body = urlencode({
            "token": "legacy", "team_id": "T1", "team_domain": "shop", "channel_id": "C1", "channel_name": "general",
            "user_id": user_id, "user_name": "someone", "command": "/churn", "text": text,
            "api_app_id": "A1", "response_url": self.response_url, "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        })
        return self.post(body, **kwargs)

    def interact(self, payload: dict, **kwargs):
        return self.post(urlencode({"payload": json.dumps(payload)}), **kwargs)

    def click(self, *, user_id: str, action_id: str, value: str | None = None, selected: str | None = None,
              channel: str = "D1", message_ts: str = "1.000001", ephemeral: bool = False):
        action = {"action_id": action_id, "block_id": "b", "type": "button", "action_ts": "1.2"}
        if value is not None:
            action["value"] = value
        if selected is not None:
            action.update(type="static_select", selected_option={"text": {"type": "plain_text", "text": "x"}, "value": selected})
        return self.interact({
            "type": "block_actions", "team": {"id": "T1"}, "user": {"id": user_id}, "api_app_id": "A1",
            "token": "legacy", "trigger_id": "trigger-1", "response_url": self.response_url,
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": ephemeral},
            "channel": {"id": channel}, "message": {"ts": message_ts, "text": "x"}, "actions": [action],
        })

    def submit_view(self, *, user_id: str, callback_id: str, private_metadata: str, values: dict,
                    view_id: str = "V1"):
        return self.interact({
            "type": "view_submission", "team": {"id": "T1"}, "user": {"id": user_id}, "api_app_id": "A1",
            "token": "legacy", "trigger_id": "trigger-2",
            "view": {"id": view_id, "type": "modal", "callback_id": callback_id, "private_metadata": private_metadata,
                     "state": {"values": values}, "hash": "h"},
        })


@pytest.fixture
def slack(slack_settings, slack_standin) -> SlackClient:
    return SlackClient(response_url=f"{slack_standin.url}/response/xyz")


@pytest.fixture
def delivered(slack_settings, slack_standin):
    """An alert DM to Ana, as Slack shows it."""
    [alert] = make_alerts()
    assert alert_deliver(alert_id=alert.pk) == "sent"
    alert.refresh_from_db()
    return alert


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Factories set passwords; the default PBKDF2 hasher would dominate these tests' run time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
