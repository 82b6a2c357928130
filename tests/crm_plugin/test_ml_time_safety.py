"""What the models read from the database at a past cutoff: only the closings, redemptions and segments known by then."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from crm_plugin.events.importing import events_import_records
from crm_plugin.models import Customer, Event
from crm_plugin.scoring import selectors as selectors_ml
from mlcore.event_tokens import FIELDS, OFFSETS, event_tokens
from mlcore.snapshot import customer_snapshot, prepare_events
from tests.crm_plugin.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def _iso(value) -> str:
    return value.isoformat()


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def cutoff(now):
    # A past cutoff (a backtest's, a training row's): after the events happened, before the shop's
    # export that brought them in (today's import).
    return now - timedelta(days=5)


def _snapshot(at):
    return customer_snapshot(selectors_ml.events_frame(before=at), selectors_ml.customers_frame(), at)


def _row(snap, external_id: str) -> int:
    pk = Customer.objects.get(external_id=external_id).pk
    return int(np.flatnonzero(snap.customer_ids == pk)[0])


def _import(now, **ticket_or_coupon):
    events_import_records(records=[
        {"customer_id": "C1", "kind": "order", "occurred_at": _iso(now - timedelta(days=40)), "amount": "30"},
        {"customer_id": "C1", "occurred_at": _iso(now - timedelta(days=20)), **ticket_or_coupon},
    ])


def test_a_coupon_redeemed_after_the_cutoff_is_not_redeemed_at_it(now, cutoff):
    _import(now, kind="coupon", amount="5", attributes={"code": "SAVE5"}, redeemed_at=_iso(now - timedelta(days=2)))
    past = _snapshot(cutoff)
    assert past.features["coupons_redeemed_365"].iloc[0] == 0 and past.features["coupons_365"].iloc[0] == 1
    assert "redeemed" not in past.texts[0]
    today = _snapshot(now)  # daily scoring: the redemption is in the past now
    assert today.features["coupons_redeemed_365"].iloc[0] == 1 and "redeemed" in today.texts[0]


def test_a_ticket_closed_after_the_cutoff_is_open_at_it(now, cutoff):
    _import(now, kind="ticket", text="refund late", closed_at=_iso(now - timedelta(days=1)))
    past = _snapshot(cutoff)
    assert past.features["tickets_open"].iloc[0] == 1 and "ticket open: refund late" in past.texts[0]
    assert _snapshot(now).features["tickets_open"].iloc[0] == 0


def test_a_ticket_marked_closed_without_a_date_is_open_before_its_import(now, cutoff):
    _import(now, kind="ticket", text="refund late", attributes={"status": "closed"})
    past = _snapshot(cutoff)
    assert past.features["tickets_open"].iloc[0] == 1
    assert round(float(past.features["oldest_open_ticket_days"].iloc[0])) == 15
    events = prepare_events(selectors_ml.events_frame())
    state = FIELDS.index("state")
    ids = past.customer_ids
    assert event_tokens(events, ids, cutoff, max_events=4)[0, -1, state] - OFFSETS["state"] == 1  # open
    # Daily scoring runs after the import: the shop said "closed", so it is closed now, as before.
    later = timezone.now() + timedelta(seconds=1)
    assert _snapshot(later).features["tickets_open"].iloc[0] == 0
    assert event_tokens(events, ids, later, max_events=4)[0, -1, state] - OFFSETS["state"] == 2


def test_a_coupon_marked_redeemed_without_a_date_is_not_redeemed_before_its_import(now, cutoff):
    _import(now, kind="coupon", amount="5", attributes={"code": "SAVE5", "redeemed": True})
    assert _snapshot(cutoff).features["coupons_redeemed_365"].iloc[0] == 0
    assert _snapshot(timezone.now() + timedelta(seconds=1)).features["coupons_redeemed_365"].iloc[0] == 1


def _ticket_resent(now, *, first_import_days_ago: int, **closing):
    """A ticket imported while open some days ago, and today's export that says it is closed."""
    ticket = {"customer_id": "C1", "kind": "ticket", "occurred_at": _iso(now - timedelta(days=20)),
              "text": "refund late", "source_id": "T-1", "attributes": {"ticket_id": "T-1", "status": "open"}}
    events_import_records(records=[
        {"customer_id": "C1", "kind": "order", "occurred_at": _iso(now - timedelta(days=40)), "amount": "30"}, ticket])
    Event.objects.update(imported_at=now - timedelta(days=first_import_days_ago))
    closed = {**ticket, "attributes": {"ticket_id": "T-1", "status": "closed"}, **closing}
    assert events_import_records(records=[closed]).tickets_closed == 1


def test_a_ticket_re_sent_closed_without_a_date_is_open_between_its_first_import_and_the_re_send(now):
    # First imported 4 days ago while open; today's export says closed, without a date.
    _ticket_resent(now, first_import_days_ago=4)
    between = _snapshot(now - timedelta(days=2))
    assert between.features["tickets_open"].iloc[0] == 1
    assert "ticket open: refund late" in between.texts[0]
    after = _snapshot(timezone.now() + timedelta(seconds=1))
    assert after.features["tickets_open"].iloc[0] == 0 and "ticket open" not in after.texts[0]


def test_a_ticket_re_sent_with_its_closing_time_is_closed_from_that_time(now):
    _ticket_resent(now, first_import_days_ago=4, closed_at=_iso(now - timedelta(days=3)))
    assert _snapshot(now - timedelta(days=2)).features["tickets_open"].iloc[0] == 0
    assert _snapshot(now - timedelta(days=3, hours=1)).features["tickets_open"].iloc[0] == 1


def test_a_coupon_re_sent_redeemed_without_a_date_is_unused_before_the_re_send(now):
    coupon = {"customer_id": "C1", "kind": "coupon", "occurred_at": _iso(now - timedelta(days=20)), "amount": "5",
              "source_id": "CP-1", "attributes": {"code": "SAVE5"}}
    events_import_records(records=[coupon])
    Event.objects.update(imported_at=now - timedelta(days=4))
    events_import_records(records=[{**coupon, "attributes": {"code": "SAVE5", "redeemed": True}}])
    assert _snapshot(now - timedelta(days=2)).features["coupons_redeemed_365"].iloc[0] == 0
    assert _snapshot(timezone.now() + timedelta(seconds=1)).features["coupons_redeemed_365"].iloc[0] == 1


def test_a_segment_changed_after_the_cutoff_is_not_visible_at_it(now, cutoff):
    CustomerFactory(external_id="C1", segment="vip", segment_since=now - timedelta(days=400))
    CustomerFactory(external_id="C2", segment="vip", segment_since=now - timedelta(days=400))
    events_import_records(records=[
        {"customer_id": "C1", "kind": "order", "occurred_at": _iso(now - timedelta(days=40)), "amount": "30",
         "segment": "lapsed"},
        {"customer_id": "C2", "kind": "order", "occurred_at": _iso(now - timedelta(days=40)), "amount": "30"},
    ])
    past = _snapshot(cutoff)
    profile = past.texts[_row(past, "C1")].split("\n")[0]
    # Not the new segment, and not the old one either: nothing records which segment held back then.
    assert "segment" not in profile
    # A segment recorded long before the cutoff is shown.
    assert past.texts[_row(past, "C2")].split("\n")[0].endswith(", segment vip")
    today = _snapshot(timezone.now() + timedelta(seconds=1))
    assert today.texts[_row(today, "C1")].split("\n")[0].endswith(", segment lapsed")


def test_the_frames_carry_the_times_a_snapshot_needs(now):
    _import(now, kind="ticket", attributes={"status": "closed"})
    events = selectors_ml.events_frame()
    assert events["imported_at"].notna().all() and str(events["imported_at"].dt.tz) == "UTC"
    assert (events["imported_at"] >= now - timedelta(seconds=1)).all()
    assert events["state_imported_at"].isna().all() and str(events["state_imported_at"].dt.tz) == "UTC"
    customers = selectors_ml.customers_frame()
    assert list(customers.columns) == list(selectors_ml.CUSTOMER_FIELDS)
    assert customers["segment_since"].notna().all()
