"""Read-side queries of the CRM plugin, including who may see which customer.

Every surface (CRM views, API, Slack) asks `customer_list_visible_to` so that access rules live in
one place: an owner sees their own book, a manager (or a Django superuser) sees everyone's. The
worklist's search box and `/churn customer` find customers with the same rule (`customer_search_match`).
"""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When

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


SEARCH_TEXT_MAX = 200
# A database id has at most 19 digits (BigAutoField); a longer number is no id and must not reach the query.
PK_DIGITS_MAX = 18


def customer_identifier_match(text: str) -> Q:
    """Customers whose shop id or email is `text` (case-insensitive), or whose database id it is."""
    match = Q(external_id__iexact=text)
    if "@" in text:  # an email always has one
        match |= Q(email__iexact=text)
    if text.isascii() and text.isdigit() and len(text) <= PK_DIGITS_MAX:
        match |= Q(pk=int(text))
    return match


def customer_search_match(text: str) -> Q:
    """The search every surface uses: part of the name, or the exact shop id, email or database id."""
    return Q(name__icontains=text) | customer_identifier_match(text)


@dataclass(frozen=True)
class CustomerSearch:
    """Customers found for a search: the first `limit`, best first, and how many matched in all."""

    customers: list[Customer]
    total: int


def customer_search_visible(*, user: AbstractBaseUser | AnonymousUser | None, text: str,
                            limit: int = 10) -> CustomerSearch:
    """Customers this user may see, found by shop id, email or database id (exactly) or else by name.

    An exact id or email wins over names (the shop id as typed is tried first). Names match
    case-insensitively anywhere in the name; a whole-name match comes first, then names that start
    with the text, then the rest alphabetically.

    Raises CrmError: code "invalid" for an empty or over-long text, "forbidden" when nothing
    visible matches but the id or email is a customer in another owner's book, "not_found" otherwise.
    """
    text = " ".join(str(text).replace("\x00", "").split())  # PostgreSQL takes no NUL in a string
    if not text:
        raise CrmError("Type part of a customer's name, their email or their id.", code="invalid")
    if len(text) > SEARCH_TEXT_MAX:
        raise CrmError(f"That is {len(text)} characters; search with at most {SEARCH_TEXT_MAX}.", code="invalid")
    visible = customer_list_visible_to(user=user).select_related("owner", "latest_score")
    # The shop id as typed first: one lookup on its unique index, the way most ids arrive.
    found = list(visible.filter(external_id=text)[:1])
    if found:
        return CustomerSearch(customers=found, total=1)
    exact = visible.filter(customer_identifier_match(text)).order_by("pk")
    found = list(exact[:limit])
    if found:
        return CustomerSearch(customers=found, total=len(found) if len(found) < limit else exact.count())
    named = (
        visible.filter(name__icontains=text)
        .annotate(rank=Case(When(name__iexact=text, then=Value(0)), When(name__istartswith=text, then=Value(1)),
                            default=Value(2), output_field=IntegerField()))
        .order_by("rank", "name", "pk")
    )
    found = list(named[:limit])
    if found:
        return CustomerSearch(customers=found, total=len(found) if len(found) < limit else named.count())
    if Customer.objects.filter(customer_identifier_match(text)).exists():
        raise CrmError(f"Customer {text!r} is in another owner's book.", code="forbidden")
    raise CrmError(f"No customer you can see matches {text!r}.", code="not_found")
