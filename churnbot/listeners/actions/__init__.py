"""Buttons: Log action (opens the modal), Snooze, Not a risk, Open in CRM, follow-up outcomes, Show (a search match)."""
from __future__ import annotations

import logging
import re
from urllib.error import URLError

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from churnbot.blocks import OUTCOME_LABELS, SHOW_CUSTOMER_ACTION, customer_card, log_action_modal
from churnbot.listeners._common import owner_and_customer, show, tell, tell_problem
from churnbot.payloads import ModalMetadata, parse_button_value, parse_outcome_value, parse_snooze_value
from churnbot.queries import alert_get, customer_card_data, intervention_get
from crm_plugin.errors import CrmError
from crm_plugin.alerts.feedback import alert_mark_not_a_risk, alert_snooze
from crm_plugin.interventions.services import intervention_record_outcome

logger = logging.getLogger(__name__)


def _container(body: dict) -> dict:
    return body.get("container") or {}


def _value(action: dict) -> str | None:
    """A button's value, or the picked option's for a select."""
    return action.get("value") or (action.get("selected_option") or {}).get("value")


def open_log_modal(ack: Ack, body: dict, action: dict, client: WebClient) -> None:
    ack()
    try:
        customer_pk, alert_pk, _ = parse_button_value(_value(action))
        _, customer = owner_and_customer(slack_user_id=body["user"]["id"], customer_pk=customer_pk, client=client)
    except CrmError as exc:
        tell_problem(body, exc.message)
        return
    container = _container(body)
    metadata = ModalMetadata(
        customer=customer.pk, alert=alert_pk, channel=container.get("channel_id"),
        ts=container.get("message_ts"), ephemeral=bool(container.get("is_ephemeral")),
        response_url=body.get("response_url"),
    )
    # trigger_id expires after 3 seconds, so views.open cannot wait for a worker.
    try:
        client.views_open(trigger_id=body["trigger_id"], view=log_action_modal(customer=customer, metadata=metadata))
    except (SlackApiError, URLError, OSError) as exc:
        logger.warning("views.open failed: %s", exc)
        tell_problem(body, "Slack did not open the form in time; press Log action again.")


def snooze(ack: Ack, body: dict, action: dict, client: WebClient) -> None:
    ack()
    try:
        customer_pk, alert_pk, days = parse_snooze_value(_value(action))
        owner, customer = owner_and_customer(slack_user_id=body["user"]["id"], customer_pk=customer_pk, client=client)
        alert_snooze(customer=customer, by=owner.user, days=days, alert=alert_get(pk=alert_pk))
    except CrmError as exc:
        tell_problem(body, exc.message)
        return
    plural = "s" if days > 1 else ""
    tell(body, f":zzz: Alerts snoozed for {days} day{plural} by <@{body['user']['id']}>", alert_pk=alert_pk)


def not_a_risk(ack: Ack, body: dict, action: dict, client: WebClient) -> None:
    ack()
    try:
        customer_pk, alert_pk, _ = parse_button_value(_value(action))
        owner, customer = owner_and_customer(slack_user_id=body["user"]["id"], customer_pk=customer_pk, client=client)
        feedback = alert_mark_not_a_risk(customer=customer, by=owner.user, alert=alert_get(pk=alert_pk))
    except CrmError as exc:
        tell_problem(body, exc.message)
        return
    tell(body, f":ok_hand: Marked not a risk until {feedback.until:%Y-%m-%d} by <@{body['user']['id']}>",
         alert_pk=alert_pk)


def show_customer(ack: Ack, body: dict, action: dict, client: WebClient) -> None:
    """One of the customers `/churn customer <name>` listed: its card replaces the list."""
    ack()
    try:
        customer_pk, _, _ = parse_button_value(_value(action))
        _, customer = owner_and_customer(slack_user_id=body["user"]["id"], customer_pk=customer_pk, client=client)
    except CrmError as exc:
        tell_problem(body, exc.message)
        return
    show(body, customer_card(customer_card_data(customer=customer)))


def open_crm(ack: Ack) -> None:
    ack()  # a link button: Slack opens the URL, we only acknowledge


def follow_up_outcome(ack: Ack, body: dict, action: dict, client: WebClient) -> None:
    ack()
    try:
        intervention_pk, outcome, alert_pk = parse_outcome_value(_value(action))
        intervention = intervention_get(pk=intervention_pk)
        if intervention is None:
            raise CrmError("That action no longer exists.", code="not_found")
        owner, _ = owner_and_customer(slack_user_id=body["user"]["id"], customer_pk=intervention.customer_id,
                                      client=client)
        intervention_record_outcome(intervention=intervention, by=owner.user, outcome=outcome)
    except CrmError as exc:
        tell_problem(body, exc.message)
        return
    label = OUTCOME_LABELS.get(outcome, outcome).lower()
    tell(body, f":memo: Outcome recorded: {label} by <@{body['user']['id']}>", alert_pk=alert_pk)


def register(app: App) -> None:
    app.action("log_action")(open_log_modal)
    app.action(re.compile(r"^snooze_(\d+|select)$"))(snooze)
    app.action("not_a_risk")(not_a_risk)
    app.action("open_crm")(open_crm)
    app.action(SHOW_CUSTOMER_ACTION)(show_customer)
    app.action(re.compile(r"^follow_up_[a-z_]+$"))(follow_up_outcome)
