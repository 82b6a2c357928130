"""The Bolt app, built lazily from settings (so test overrides apply) and cached per configuration."""
from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from slack_bolt import App
from slack_bolt.adapter.django import SlackRequestHandler
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient

NOT_CONFIGURED = (
    "Slack is not configured on this server: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET "
    "(see docs/slack.md). Alerts are printed by the console backend until then."
)
# Slack waits 3 s for an answer; a Web API call made while answering (users.info for a new user,
# views.open) gives up, without a retry, in time for the handler to say "try again".
IN_REQUEST_TIMEOUT = 2


def _single_workspace(token: str):
    """Bolt's authorize hook for one workspace and one bot token.

    With a plain `token=` Bolt authorises through auth.test, either while the app is built
    (here: on the first request) or on the first request itself, so a slow or unreachable
    Web API would hold up the answer. The token comes from settings, so nothing needs asking;
    `manage.py slack_check` verifies it instead.
    """
    def authorize(enterprise_id: str | None, team_id: str | None, user_id: str | None) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id, bot_token=token)

    return authorize


@lru_cache(maxsize=8)
def _build(token: str, signing_secret: str | None, base_url: str, timeout: int, socket_mode: bool) -> App:
    from churnbot.listeners import actions, commands, views

    app = App(
        # No token on the base client: every request gets the token from `authorize`.
        client=WebClient(base_url=base_url, timeout=min(timeout, IN_REQUEST_TIMEOUT), retry_handlers=[]),
        authorize=_single_workspace(token),
        signing_secret=signing_secret,
        # Listeners run before the HTTP response: they only do fast DB work and hand anything
        # slow to Celery, and Django's per-thread DB connections stay in the request thread.
        process_before_response=True,
        request_verification_enabled=not socket_mode,
    )
    commands.register(app)
    actions.register(app)
    views.register(app)
    return app


def bolt_app(*, socket_mode: bool = False) -> App | None:
    """The app for the current settings, or None when Slack is not configured."""
    token = settings.SLACK_BOT_TOKEN
    secret = settings.SLACK_SIGNING_SECRET
    if not token or (not socket_mode and not secret):
        return None
    return _build(token, secret, settings.SLACK_API_BASE_URL, settings.SLACK_HTTP_TIMEOUT, socket_mode)


@lru_cache(maxsize=8)
def _handler(app: App) -> SlackRequestHandler:
    return SlackRequestHandler(app)


def request_handler() -> SlackRequestHandler | None:
    app = bolt_app()
    return None if app is None else _handler(app)
