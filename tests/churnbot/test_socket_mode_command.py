"""run_slack_socket_mode refuses to start without the tokens it needs, and says which."""
from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command


def test_socket_mode_needs_a_bot_token(settings):
    settings.SLACK_BOT_TOKEN = None
    with pytest.raises(CommandError, match="SLACK_BOT_TOKEN is not set"):
        call_command("run_slack_socket_mode")


def test_socket_mode_needs_an_app_level_token(settings):
    settings.SLACK_BOT_TOKEN = "xoxb-1"
    settings.SLACK_APP_TOKEN = "xoxb-wrong-kind"
    with pytest.raises(CommandError, match=r"SLACK_APP_TOKEN \(an app-level token, xapp-"):
        call_command("run_slack_socket_mode")
