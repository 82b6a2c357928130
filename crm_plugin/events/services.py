"""One small constructor per event kind, and the one way to append events.

Constructors return unsaved `Event` rows so that callers (imports, the demo shop, the
simulator) can append thousands at once with `event_bulk_append`.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from crm_plugin.models import Customer, Event


def _event(customer: Customer, kind: str, occurred_at: datetime, source_id: str, **fields) -> Event:
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    return Event(customer=customer, kind=kind, occurred_at=occurred_at, source_id=source_id, **fields)


def order_placed_event(*, customer: Customer, occurred_at: datetime, source_id: str, amount: Decimal,
                       quantity: int | None = None, attributes: dict | None = None) -> Event:
    return _event(customer, Event.Kind.ORDER, occurred_at, source_id, amount=amount, quantity=quantity,
                  attributes=attributes or {})


def visit_event(*, customer: Customer, occurred_at: datetime, source_id: str, attributes: dict | None = None) -> Event:
    return _event(customer, Event.Kind.VISIT, occurred_at, source_id, attributes=attributes or {})


def review_written_event(*, customer: Customer, occurred_at: datetime, source_id: str, rating: int, text: str = "",
                         attributes: dict | None = None) -> Event:
    return _event(customer, Event.Kind.REVIEW, occurred_at, source_id, rating=rating, text=text, attributes=attributes or {})


def ticket_event(*, customer: Customer, occurred_at: datetime, source_id: str, text: str, status: str = "open",
                 attributes: dict | None = None) -> Event:
    """A support ticket. `attributes` carries `ticket_id`, `status` (open/closed) and `closed_at` when known."""
    return _event(customer, Event.Kind.TICKET, occurred_at, source_id, text=text,
                  attributes={"status": status, **(attributes or {})})


def return_event(*, customer: Customer, occurred_at: datetime, source_id: str, amount: Decimal | None = None,
                 quantity: int | None = None, text: str = "", attributes: dict | None = None) -> Event:
    return _event(customer, Event.Kind.RETURN, occurred_at, source_id, amount=amount, quantity=quantity, text=text,
                  attributes=attributes or {})


def coupon_event(*, customer: Customer, occurred_at: datetime, source_id: str, amount: Decimal | None = None,
                 attributes: dict | None = None) -> Event:
    return _event(customer, Event.Kind.COUPON, occurred_at, source_id, amount=amount, attributes=attributes or {})


@transaction.atomic
def event_bulk_append(*, events: Iterable[Event], batch_size: int = 5000) -> int:
    """Append events, skipping any whose `source_id` is already stored. Returns how many were new.

    Idempotent: appending the same events twice stores them once.
    """
    events = list(events)
    if not events:
        return 0
    known: set[str] = set()
    ids = [e.source_id for e in events]
    for start in range(0, len(ids), 10_000):
        known.update(Event.objects.filter(source_id__in=ids[start:start + 10_000]).values_list("source_id", flat=True))
    fresh, seen = [], set()
    for event in events:
        if event.source_id in known or event.source_id in seen:
            continue
        seen.add(event.source_id)
        fresh.append(event)
    Event.objects.bulk_create(fresh, batch_size=batch_size)
    return len(fresh)
