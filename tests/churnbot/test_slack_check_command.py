"""`manage.py slack_check`: where the bot token is verified, since requests never call auth.test."""
from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from churnbot.management.commands.slack_check import REQUIRED_SCOPES
from tests.churnbot.test_bolt import closed_port_url

MANIFEST = Path(__file__).resolve().parents[2] / "slack" / "manifest.yml"


def run() -> str:
    out = StringIO()
    call_command("slack_check", stdout=out)
    return out.getvalue()


def test_a_working_token_prints_the_workspace_and_the_bot(slack_settings, slack_standin):
    slack_standin.scopes = ",".join(REQUIRED_SCOPES)
    assert run().strip() == "Slack token OK: workspace Shop (T1), bot user churnbot (UBOT, bot BBOT)."
    [call] = slack_standin.calls_to("auth.test")
    assert call.headers.get("Authorization") == "Bearer xoxb-test-token"


def test_a_refused_token_says_so_and_where_to_get_the_right_one(slack_settings, slack_standin):
    slack_standin.error_next(error="invalid_auth", method="auth.test")
    with pytest.raises(CommandError, match=r"Slack refused SLACK_BOT_TOKEN: invalid_auth\. Copy the Bot User OAuth Token"):
        run()


def test_an_unreachable_slack_is_named(slack_settings):
    slack_settings.SLACK_API_BASE_URL = closed_port_url()
    with pytest.raises(CommandError, match="Cannot reach Slack at http://127.0.0.1:"):
        run()


def test_missing_scopes_are_listed(slack_settings, slack_standin):
    slack_standin.scopes = "commands,chat:write,users:read"
    with pytest.raises(CommandError, match="The token lacks the scopes im:write, im:history, users:read.email"):
        run()


def test_without_a_token_it_says_alerts_go_to_the_console(settings):
    settings.SLACK_BOT_TOKEN = None
    with pytest.raises(CommandError, match="SLACK_BOT_TOKEN is not set"):
        run()


def test_without_a_signing_secret_the_endpoint_would_answer_503(slack_settings, slack_standin):
    slack_settings.SLACK_SIGNING_SECRET = None
    slack_settings.SLACK_APP_TOKEN = None
    with pytest.raises(CommandError, match="SLACK_SIGNING_SECRET is not set, so /slack/events answers 503"):
        run()


def test_the_scopes_checked_are_the_manifests():
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert tuple(manifest["oauth_config"]["scopes"]["bot"]) == REQUIRED_SCOPES
