"""Delivery of outbox alerts to Slack DMs (or the console): at most one message per alert.

The guarantee (see docs/slack.md):
1. A row is claimed (pending -> sending) by a conditional update, so one worker owns it.
2. Every post carries message metadata with the alert's idempotency key.
3. Whenever an earlier attempt might have reached Slack (a 5xx or connection error on the post,
   or a worker that died while the row was `sending`), the DM's history is searched for that
   key before posting again; if the message is there, we record it instead of re-posting.
4. Transient failures (429 with Retry-After, 5xx, connection errors) put the row back to
   pending and raise `DeliveryDeferred`; the Celery task retries with backoff, and the
   periodic sweep (`churnbot.tasks.alerts_queue_pending`) picks up anything left once Slack is back.
"""
from __future__ import annotations

import logging
from urllib.error import URLError

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackObjectFormationError
from slack_sdk.models.metadata import Metadata

from churnbot.blocks import alert_message
from churnbot.console import CONSOLE_CHANNEL, console_post
from churnbot.identity import slack_user_for_owner
from churnbot.queries import alert_get, digest_items
from crm_plugin.models import Alert
from crm_plugin.alerts.outbox import (
    AlertClaim, alert_claim_for_delivery, alert_ids_due_for_delivery, alert_mark_failed, alert_mark_sent, alert_release,
)

logger = logging.getLogger(__name__)

METADATA_EVENT = "churn_alert"
# Slack `error` values that mean "try again later" rather than "this will never work".
TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
HISTORY_PAGES = 10


class DeliveryDeferred(Exception):
    """A transient failure: the row is pending again; try after `countdown` seconds."""

    def __init__(self, message: str, *, countdown: int):
        super().__init__(message)
        self.countdown = countdown


def slack_configured() -> bool:
    return bool(settings.SLACK_BOT_TOKEN)


def delivery_client() -> WebClient:
    """A Web API client without slack-sdk's built-in retries: a blind retry of a post that
    timed out could post twice, so retries are ours (after a history check)."""
    return WebClient(token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_BASE_URL,
                     timeout=settings.SLACK_HTTP_TIMEOUT, retry_handlers=[])


def backoff_seconds(attempt: int) -> int:
    """5 s, 10 s, 20 s … capped at 10 minutes."""
    return int(min(5 * 2 ** max(attempt - 1, 0), 600))


def _retry_after(exc: SlackApiError) -> int:
    for key, value in (exc.response.headers or {}).items():
        if key.lower() == "retry-after":
            try:
                return max(int(float(value if isinstance(value, str) else value[0])), 1)
            except (TypeError, ValueError, IndexError):
                break
    return 1


def _error_code(exc: SlackApiError) -> str:
    data = exc.response.data
    return str(data.get("error", "")) if isinstance(data, dict) else ""


def _find_posted(client: WebClient, channel: str, claim: AlertClaim) -> str | None:
    """The ts of a message in `channel` carrying this alert's key, posted since it was first claimed."""
    oldest = f"{claim.first_claimed_at.timestamp() - 60:.6f}"
    cursor = None
    for _ in range(HISTORY_PAGES):
        page = client.conversations_history(channel=channel, oldest=oldest, include_all_metadata=True, limit=200,
                                            cursor=cursor)
        for message in page.get("messages") or []:
            metadata = message.get("metadata") or {}
            if (metadata.get("event_type") == METADATA_EVENT
                    and (metadata.get("event_payload") or {}).get("alert_key") == claim.alert.idempotency_key):
                return message["ts"]
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None
    return None


def _api_error(alert: Alert, exc: SlackApiError, *, posting: bool) -> str:
    status = exc.response.status_code
    code = _error_code(exc)
    if status == 429 or code == "ratelimited":
        # Slack refused the call outright, so nothing was posted.
        wait = _retry_after(exc)
        alert_release(alert=alert, error=f"rate limited by Slack; retry after {wait}s", uncertain=False)
        raise DeliveryDeferred("rate limited", countdown=wait)
    if status >= 500 or code in TRANSIENT_ERRORS:
        alert_release(alert=alert, error=f"Slack error {status} {code}".strip(), uncertain=posting)
        raise DeliveryDeferred(f"Slack error {status}", countdown=backoff_seconds(alert.attempts))
    alert_mark_failed(alert=alert, error=f"Slack refused the message: {code or status}")
    logger.error("alert %s failed permanently: %s", alert.pk, code or status)
    return "failed"


def alert_deliver(*, alert_id: int, client: WebClient | None = None) -> str:
    """Deliver one alert. Returns "sent", "found" (already in Slack), "skipped" or "failed";
    raises DeliveryDeferred on a transient failure (the row is pending again)."""
    claim = alert_claim_for_delivery(alert_id=alert_id)
    if claim is None:
        return "skipped"
    alert = claim.alert
    items = digest_items(digest=alert) if alert.kind == Alert.Kind.DIGEST else []
    if client is None and not slack_configured():
        channel, ts = console_post(alert=alert, digest_items=items)
        alert_mark_sent(alert=alert, channel=channel, ts=ts)
        return "sent"
    # Escalations without a manager go to a configured channel instead of a DM.
    to_channel = (alert.payload or {}).get("channel", "") if alert.kind == Alert.Kind.ESCALATION else ""
    if alert.owner is None and not to_channel:
        alert_mark_failed(alert=alert, error="The alert has no owner to send it to.")
        return "failed"
    client = client or delivery_client()
    posting = False
    try:
        text, blocks = alert_message(alert, digest_items=items)
        if alert.owner is None:
            channel = to_channel
        else:
            user_id = slack_user_for_owner(owner=alert.owner, client=client)
            channel = client.conversations_open(users=user_id)["channel"]["id"]
        if claim.uncertain:
            ts = _find_posted(client, channel, claim)
            if ts is not None:
                alert_mark_sent(alert=alert, channel=channel, ts=ts)
                logger.info("alert %s was already in Slack (ts %s); not posting again", alert.pk, ts)
                return "found"
        posting = True
        response = client.chat_postMessage(
            channel=channel, text=text, blocks=blocks, unfurl_links=False,
            metadata=Metadata(event_type=METADATA_EVENT, event_payload={"alert_key": alert.idempotency_key}),
        )
    except SlackApiError as exc:
        return _api_error(alert, exc, posting=posting)
    except SlackObjectFormationError as exc:
        alert_mark_failed(alert=alert, error=f"message does not fit Slack's limits: {exc}")
        return "failed"
    except (URLError, OSError) as exc:  # connection refused/reset, timeouts
        alert_release(alert=alert, error=f"cannot reach Slack: {exc}", uncertain=posting)
        raise DeliveryDeferred("connection error", countdown=backoff_seconds(alert.attempts)) from exc
    alert_mark_sent(alert=alert, channel=response["channel"], ts=response["ts"])
    return "sent"


def alert_message_annotate(*, alert_id: int, footer: str, client: WebClient | None = None) -> bool:
    """Replace an alert message's buttons with a line such as "Logged: call by @ana"."""
    alert = alert_get(pk=alert_id)
    if alert is None or not alert.slack_ts:
        return False
    if alert.slack_channel == CONSOLE_CHANNEL:
        print(f"── alert #{alert.pk} updated: {footer}")
        return True
    client = client or delivery_client()
    text, blocks = alert_message(alert, footer=footer)
    client.chat_update(channel=alert.slack_channel, ts=alert.slack_ts, text=text, blocks=blocks)
    return True
