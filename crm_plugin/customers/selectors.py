"""Read-side queries of the CRM plugin, including who may see which customer.

Every surface (CRM views, API, Slack) asks `customer_list_visible_to` / `customer_get_visible`
so that access rules live in one place: an owner sees their own book, a manager (or a
Django superuser) sees everyone's.
"""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from crm_plugin.errors import CrmError
from crm_plugin.models import AccountOwner, Customer


def owner_for_user(user: AbstractBaseUser | AnonymousUser | None) -> AccountOwner | None:
    if user is None or not user.is_authenticated:
        return None
    try:
        return user.account_owner
    except AccountOwner.DoesNotExist:
        return None


def user_sees_everyone(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    if user is None or not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    owner = owner_for_user(user)
    return bool(owner and owner.is_manager)


def can_reassign(*, user: AbstractBaseUser | AnonymousUser | None) -> bool:
    """Moving customers between books is a manager's decision (managers and superusers): an account
    manager could otherwise hand away the customers they are measured on, or take a colleague's."""
    return user_sees_everyone(user)


def customer_list_visible_to(*, user: AbstractBaseUser | AnonymousUser | None) -> QuerySet[Customer]:
    """Customers this user may see: all for managers and admins, the own book for owners, none otherwise."""
    if user_sees_everyone(user):
        return Customer.objects.all()
    owner = owner_for_user(user)
    if owner is None:
        return Customer.objects.none()
    return Customer.objects.filter(owner=owner)


def customer_get_visible(*, user: AbstractBaseUser | AnonymousUser | None, lookup: str | int) -> Customer:
    """Find one customer by database id, shop id or email, if this user may see them.

    Raises CrmError(code="not_found") when there is no such customer and
    CrmError(code="forbidden") when it belongs to someone else's book.
    """
    text = str(lookup).strip()
    candidates = Customer.objects.select_related("owner", "latest_score")
    customer = candidates.filter(external_id=text).first()
    if customer is None and "@" in text:
        customer = candidates.filter(email__iexact=text).order_by("pk").first()
    if customer is None and text.isdigit():
        customer = candidates.filter(pk=int(text)).first()
    if customer is None:
        raise CrmError(f"No customer with id or email {text!r}.", code="not_found")
    if not customer_list_visible_to(user=user).filter(pk=customer.pk).exists():
        raise CrmError(f"Customer {text!r} is in another owner's book.", code="forbidden")
    return customer
