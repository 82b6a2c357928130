"""The Bolt app, built lazily from settings (so test overrides apply) and cached per configuration."""
from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from slack_bolt import App
from slack_bolt.adapter.django import SlackRequestHandler
from slack_sdk import WebClient

NOT_CONFIGURED = (
    "Slack is not configured on this server: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET "
    "(see docs/slack.md). Alerts are printed by the console backend until then."
)


@lru_cache(maxsize=8)
def _build(token: str, signing_secret: str | None, base_url: str, timeout: int, socket_mode: bool) -> App:
    from churnbot.listeners import actions, commands, views

    app = App(
        client=WebClient(token=token, base_url=base_url, timeout=timeout),
        signing_secret=signing_secret,
        # Listeners run before the HTTP response: they only do fast DB work and hand anything
        # slow to Celery, and Django's per-thread DB connections stay in the request thread.
        process_before_response=True,
        request_verification_enabled=not socket_mode,
        # The token is checked on the first request (auth.test), not at import time.
        token_verification_enabled=False,
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
