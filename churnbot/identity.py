"""Who is who: a Slack user <-> an AccountOwner, by stored Slack id, else resolved once by email."""
from __future__ import annotations

import logging
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from crm_plugin.errors import CrmError
from crm_plugin.models import AccountOwner
from crm_plugin.customers.services import account_owner_link_slack

logger = logging.getLogger(__name__)

UNMAPPED_TEXT = (
    "I don't know which account owner you are, so I can't show customer data. "
    "Ask an admin to add your Slack email to your account-owner profile in the CRM."
)


SLACK_UNAVAILABLE_TEXT = "I couldn't check who you are with Slack just now; please try again in a minute."


def owner_for_slack_user(*, slack_user_id: str, client: WebClient) -> AccountOwner | None:
    """The owner behind a Slack user; the first time, look the user's email up and remember the id.

    Returns None for a user with no owner profile; raises CrmError when Slack cannot be asked.
    """
    owner = AccountOwner.objects.select_related("user").filter(slack_user_id=slack_user_id).first()
    if owner is not None:
        return owner
    try:
        info = client.users_info(user=slack_user_id)
    except SlackApiError as exc:
        if exc.response.status_code == 429 or exc.response.status_code >= 500:
            raise CrmError(SLACK_UNAVAILABLE_TEXT, code="slack_unavailable") from exc
        logger.warning("users.info for %s failed: %s", slack_user_id, exc.response.get("error"))
        return None
    except (URLError, OSError) as exc:
        raise CrmError(SLACK_UNAVAILABLE_TEXT, code="slack_unavailable") from exc
    email = ((info.get("user") or {}).get("profile") or {}).get("email")
    if not email:
        return None
    owner = AccountOwner.objects.select_related("user").filter(email__iexact=email, slack_user_id="").first()
    if owner is None:
        return None
    try:
        return account_owner_link_slack(owner=owner, slack_user_id=slack_user_id)
    except CrmError as exc:
        logger.warning("cannot link %s to %s: %s", slack_user_id, owner, exc)
        return None


def slack_user_for_owner(*, owner: AccountOwner, client: WebClient) -> str:
    """The owner's Slack user id; the first time, found by email (users.lookupByEmail) and stored.

    Raises SlackApiError (e.g. `users_not_found`) when Slack has no such user.
    """
    if owner.slack_user_id:
        return owner.slack_user_id
    found = client.users_lookupByEmail(email=owner.email)
    user_id = found["user"]["id"]
    account_owner_link_slack(owner=owner, slack_user_id=user_id)
    return user_id
