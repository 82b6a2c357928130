"""Writes about customers and their account owners: moving customers between books, linking an owner to Slack."""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from crm_plugin.customers.selectors import can_reassign, customer_list_visible_to
from crm_plugin.errors import CrmError
from crm_plugin.models import AccountOwner, Alert, Customer

REASSIGN_MAX = 500  # one screenful of selections many times over; a whole book moves in the admin


@dataclass(frozen=True)
class Reassignment:
    moved: list[Customer]
    unchanged: int  # already in the new owner's book
    notice: Alert | None  # the Slack message telling the new owner, None when nothing moved


def _user_name(user: AbstractBaseUser) -> str:
    return (user.get_full_name() if hasattr(user, "get_full_name") else "") or user.get_username()


@transaction.atomic
def customer_reassign(*, customer_ids: Sequence[int], owner: AccountOwner | int, by: AbstractBaseUser) -> Reassignment:
    """Move these customers into `owner`'s book, record who did it and when, and tell the new owner.

    Managers only (`can_reassign`): the same rule for the CRM, the API and Slack. The new owner is
    told through the alert outbox (one message listing every customer moved to them), so the
    message is delivered, retried and deduplicated like an alert, after this transaction commits.
    """
    if not can_reassign(user=by):
        raise CrmError("Only a manager can move customers between books.", code="forbidden")
    ids = sorted({int(pk) for pk in customer_ids})
    if not ids:
        raise CrmError("Select at least one customer to reassign.", code="nothing_selected")
    if len(ids) > REASSIGN_MAX:
        raise CrmError(f"Reassign at most {REASSIGN_MAX} customers at a time, not {len(ids)}.", code="too_many")
    if not isinstance(owner, AccountOwner):
        owner = AccountOwner.objects.filter(pk=owner).first()
        if owner is None:
            raise CrmError("Choose the owner to move the customers to.", code="invalid_owner")
    customers = list(customer_list_visible_to(user=by).filter(pk__in=ids).select_for_update().order_by("pk"))
    if len(customers) != len(ids):
        raise CrmError("Some of the selected customers no longer exist.", code="not_found")
    now = timezone.now()
    moved = [c for c in customers if c.owner_id != owner.pk]
    for customer in moved:
        customer.owner, customer.owner_assigned_at, customer.owner_assigned_by = owner, now, by
    Customer.objects.bulk_update(moved, ["owner", "owner_assigned_at", "owner_assigned_by", "updated_at"])
    notice = None
    if moved:
        shown = Customer.objects.filter(pk__in=[c.pk for c in moved]).select_related("latest_score").order_by("pk")
        notice = Alert.objects.create(
            kind=Alert.Kind.ASSIGNED, owner=owner, idempotency_key=f"assigned:{owner.pk}:{uuid.uuid4().hex}",
            payload={
                "by": _user_name(by), "count": len(moved),
                "customers": [{"pk": c.pk, "external_id": c.external_id, "name": c.name or c.external_id,
                               "probability": c.latest_score.probability if c.latest_score_id else None,
                               "stage": c.lifecycle_stage} for c in shown[:20]],
            },
        )
    return Reassignment(moved=moved, unchanged=len(customers) - len(moved), notice=notice)


@transaction.atomic
def account_owner_link_slack(*, owner: AccountOwner, slack_user_id: str) -> AccountOwner:
    """Remember an owner's Slack user id (resolved once by email)."""
    if not slack_user_id or len(slack_user_id) > 32:
        raise CrmError("A Slack user id looks like U012ABCDEF.", code="invalid_slack_id")
    if AccountOwner.objects.filter(slack_user_id=slack_user_id).exclude(pk=owner.pk).exists():
        raise CrmError(f"Slack user {slack_user_id} is already linked to another owner.", code="slack_id_taken")
    AccountOwner.objects.filter(pk=owner.pk).update(slack_user_id=slack_user_id)
    owner.slack_user_id = slack_user_id
    return owner
