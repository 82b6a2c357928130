"""Check the Slack configuration against Slack itself: the token works, and has the scopes the app uses.

The endpoint never calls auth.test while answering Slack, so a revoked or mistyped token shows
up here (run it after deploying or rotating the token) rather than as a slow first request.
"""
from __future__ import annotations

from urllib.error import URLError

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

# The bot scopes in slack/manifest.yml: what the listeners and delivery call.
REQUIRED_SCOPES = ("commands", "chat:write", "im:write", "im:history", "users:read", "users:read.email")


class Command(BaseCommand):
    help = "Call Slack's auth.test with SLACK_BOT_TOKEN and print the workspace and bot, or what is wrong."

    def handle(self, *args, **options) -> None:
        if not settings.SLACK_BOT_TOKEN:
            raise CommandError("SLACK_BOT_TOKEN is not set, so alerts go to the console backend; see docs/slack.md.")
        client = WebClient(token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_BASE_URL,
                           timeout=settings.SLACK_HTTP_TIMEOUT)
        try:
            answer = client.auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            raise CommandError(f"Slack refused SLACK_BOT_TOKEN: {error or exc.response.status_code}. "
                               "Copy the Bot User OAuth Token (xoxb-…) from the app's Install App page.") from exc
        except (URLError, OSError) as exc:
            raise CommandError(f"Cannot reach Slack at {settings.SLACK_API_BASE_URL}: {exc}") from exc
        self.stdout.write(
            f"Slack token OK: workspace {answer.get('team')} ({answer.get('team_id')}), "
            f"bot user {answer.get('user')} ({answer.get('user_id')}, bot {answer.get('bot_id')})."
        )
        problems = []
        granted = _header(answer.headers, "x-oauth-scopes")
        if granted is not None:
            missing = [s for s in REQUIRED_SCOPES if s not in {g.strip() for g in granted.split(",")}]
            if missing:
                problems.append(f"the token lacks the scopes {', '.join(missing)}: add them (slack/manifest.yml) "
                                "and reinstall the app")
        if not settings.SLACK_SIGNING_SECRET and not settings.SLACK_APP_TOKEN:
            problems.append("SLACK_SIGNING_SECRET is not set, so /slack/events answers 503 "
                            "(or set SLACK_APP_TOKEN and run run_slack_socket_mode)")
        if problems:
            text = "; ".join(problems)
            raise CommandError(text[0].upper() + text[1:] + ".")


def _header(headers: dict, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value if isinstance(value, str) else ",".join(value)
    return None
