"""The endpoint answers without asking Slack's Web API first: no auth.test, however Slack is doing."""
from __future__ import annotations

import socket
import time

import pytest

from tests.crm_plugin.factories import AccountOwnerFactory

pytestmark = pytest.mark.django_db


def closed_port_url() -> str:
    """An API base URL on a loopback port nobody listens on: every call is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/"


def test_help_is_answered_while_slack_is_slow_and_auth_test_is_never_called(slack, slack_standin):
    slack_standin.delay = 5  # any Web API call made while answering would show in the time and the calls
    started = time.monotonic()
    responses = [slack.command("help", user_id="UNOBODY") for _ in range(2)]  # first request of the app, and a later one
    elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [200, 200]
    assert "/churn customer" in responses[0].json()["text"]
    assert slack_standin.calls == []
    assert elapsed < 3


def test_help_is_answered_while_slack_is_unreachable(slack, slack_settings):
    slack_settings.SLACK_API_BASE_URL = closed_port_url()
    response = slack.command("help", user_id="UNOBODY")
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral"


def test_a_known_owner_looks_up_their_book_without_any_web_api_call(slack, slack_standin):
    AccountOwnerFactory(slack_user_id="UANA")
    slack_standin.delay = 5
    response = slack.command("top", user_id="UANA")
    assert response.status_code == 200 and "riskiest" in response.json()["text"]
    assert slack_standin.calls == []


def test_a_new_user_is_told_to_retry_when_slack_is_too_slow_to_say_who_they_are(slack, slack_standin):
    slack_standin.delay = 5  # longer than Slack waits for our answer
    started = time.monotonic()
    response = slack.command("top", user_id="UNEW")
    assert time.monotonic() - started < 3
    assert response.status_code == 200
    assert "try again in a minute" in response.json()["text"]
    assert [c.method for c in slack_standin.calls] == ["users.info"]  # one try, no auth.test, no retry
