"""Celery adapters for the Slack side (all routed to the `slack` queue): take ids, call one service."""
from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from slack_sdk.errors import SlackApiError

from churnbot.delivery import DeliveryDeferred, alert_deliver, alert_message_annotate
from churnbot.enqueue import enqueue_many_after_commit
from crm_plugin.alerts.escalations import alert_escalations_create
from crm_plugin.alerts.follow_ups import alert_follow_ups_create
from crm_plugin.alerts.outbox import alert_ids_due_for_delivery

logger = logging.getLogger(__name__)


@shared_task(bind=True, name="churnbot.deliver_alert", max_retries=None)
def deliver_alert(self, alert_id: int) -> str:
    """Post one alert; on 429/5xx/connection errors retry with backoff (Retry-After honoured)."""
    try:
        return alert_deliver(alert_id=alert_id)
    except DeliveryDeferred as deferred:
        # In-process (no broker) a retry would run at once and ignore the wait; the row is
        # pending again, so the next sweep or run_daily delivers it instead.
        if self.request.is_eager or self.request.retries >= settings.SLACK_DELIVERY_MAX_RETRIES:
            logger.warning("alert %s deferred (%s); the pending sweep will retry", alert_id, deferred)
            return "deferred"
        raise self.retry(countdown=deferred.countdown, exc=deferred) from deferred


def alerts_queue_pending() -> int:
    """Queue delivery of every pending (or abandoned) alert, after the current transaction commits.

    Safe to call any time and as often as you like: the claim makes duplicates no-ops. With the
    broker down nothing is queued and the rows stay pending for the next sweep.
    """
    ids = alert_ids_due_for_delivery()
    enqueue_many_after_commit(deliver_alert, [(pk,) for pk in ids])
    return len(ids)


@shared_task(name="churnbot.alerts_deliver_pending")
def alerts_deliver_pending() -> int:
    """Periodic sweep (beat): everything still pending goes out once Slack answers again."""
    return alerts_queue_pending()


@shared_task(name="churnbot.follow_ups_send")
def follow_ups_send() -> int:
    """Queue "how did it go?" DMs for follow-ups due today, then deliver them."""
    created = alert_follow_ups_create()
    alerts_queue_pending()
    return len(created)


@shared_task(name="churnbot.escalations_send")
def escalations_send() -> int:
    """Escalate alerts nobody acted on within CHURN_ESCALATION_DAYS, then deliver them."""
    summary = alert_escalations_create()
    alerts_queue_pending()
    return summary.escalated


@shared_task(bind=True, name="churnbot.alert_message_annotate", max_retries=5)
def alert_message_annotate_task(self, alert_id: int, footer: str) -> bool:
    """Update the original alert DM after a button or modal ("Logged: call by @ana")."""
    try:
        return alert_message_annotate(alert_id=alert_id, footer=footer)
    except SlackApiError as exc:
        if self.request.is_eager or exc.response.status_code < 500 and exc.response.status_code != 429:
            logger.warning("could not update alert %s message: %s", alert_id, exc)
            return False
        raise self.retry(countdown=10, exc=exc) from exc


@shared_task(bind=True, name="churnbot.response_url_post", max_retries=3)
def response_url_post(self, response_url: str, text: str, blocks: list[dict] | None = None,
                      replace_original: bool = False) -> bool:
    """A private answer through a response URL (they live 30 minutes): a line under an ephemeral card,
    or with `blocks` and `replace_original` a card in place of the message whose button was pressed."""
    from slack_sdk.webhook import WebhookClient

    result = WebhookClient(response_url, timeout=settings.SLACK_HTTP_TIMEOUT).send(
        text=text, blocks=blocks, response_type="ephemeral", replace_original=replace_original)
    if result.status_code >= 500 and not self.request.is_eager:
        raise self.retry(countdown=5)
    return result.status_code == 200
