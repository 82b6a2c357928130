"""Helpers shared by the interactive listeners: who clicked, which customer, where to answer."""
from __future__ import annotations

from slack_sdk import WebClient

from churnbot.blocks import escape
from churnbot.enqueue import enqueue_after_commit
from churnbot.identity import UNMAPPED_TEXT, owner_for_slack_user
from churnbot.tasks import alert_message_annotate_task, response_url_post
from crm_plugin.errors import CrmError
from crm_plugin.models import AccountOwner, Customer
from crm_plugin.customers.selectors import customer_list_visible_to


def owner_and_customer(*, slack_user_id: str, customer_pk: int, client: WebClient) -> tuple[AccountOwner, Customer]:
    """The clicking owner and the customer, if they may see it; CrmError with a readable message otherwise."""
    owner = owner_for_slack_user(slack_user_id=slack_user_id, client=client)
    if owner is None:
        raise CrmError(UNMAPPED_TEXT, code="unmapped")
    # By primary key only: a button carries our pk, which may look like some shop's external id.
    customer = customer_list_visible_to(user=owner.user).select_related("owner").filter(pk=customer_pk).first()
    if customer is None:
        raise CrmError("That customer is not in your book (or no longer exists).", code="forbidden")
    return owner, customer


def tell(body: dict, text: str, *, alert_pk: int | None = None) -> None:
    """After the ack: annotate the alert DM (chat.update) or add a private line under an ephemeral card.

    Best effort: with the broker down the action is saved but this line is not shown.
    """
    container = body.get("container") or {}
    if alert_pk is not None and not container.get("is_ephemeral"):
        enqueue_after_commit(alert_message_annotate_task, alert_pk, text)
        return
    response_url = body.get("response_url") or ""
    if response_url:
        enqueue_after_commit(response_url_post, response_url, text)


def show(body: dict, message: tuple[str, list[dict]]) -> None:
    """After the ack: replace the private message whose button was pressed (a list of matches) with `message`."""
    response_url = body.get("response_url") or ""
    if response_url:
        text, blocks = message
        enqueue_after_commit(response_url_post, response_url, text, blocks, True)


def tell_problem(body: dict, message: str) -> None:
    """A private line saying why nothing happened. The message may quote user input, so it is escaped."""
    tell(body, escape(message))
