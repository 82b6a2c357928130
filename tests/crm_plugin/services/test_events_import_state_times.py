"""Importing when a ticket closed and a coupon was redeemed, and when a customer's segment was recorded."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.events.importing import events_import_file, events_import_records
from crm_plugin.models import Customer, Event
from tests.crm_plugin.factories import CustomerFactory

pytestmark = pytest.mark.django_db

TICKETS_CSV = ("customer_id,kind,occurred_at,text,closed_at,attributes\n"
               "C1,ticket,2026-03-01T09:00:00Z,refund late,2026-03-04T10:30:00+02:00,\n"
               "C1,ticket,2026-03-02,size question,,\"{\"\"status\"\": \"\"open\"\"}\"\n"
               "C2,coupon,2026-03-01,,,\n")


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_closed_at_is_stored_with_the_ticket_in_utc(tmp_path):
    summary = events_import_file(path=write(tmp_path, TICKETS_CSV), fmt="csv")
    assert summary.added == 3
    closed, still_open = Event.objects.filter(kind="ticket").order_by("occurred_at")
    assert closed.attributes == {"status": "closed", "closed_at": "2026-03-04T08:30:00+00:00"}
    assert still_open.attributes == {"status": "open"}
    # An empty cell on another kind's row is no value at all.
    assert Event.objects.get(kind="coupon").attributes == {}


def test_reimporting_a_file_with_closing_times_adds_nothing(tmp_path):
    path = write(tmp_path, TICKETS_CSV)
    events_import_file(path=path, fmt="csv")
    again = events_import_file(path=path, fmt="csv")
    assert (again.added, again.skipped) == (0, 3) and Event.objects.count() == 3


def test_jsonl_redeemed_at_marks_the_coupon_redeemed_at_that_time(tmp_path):
    path = write(tmp_path, '{"customer_id": "C1", "kind": "coupon", "occurred_at": "2026-03-01", "amount": "5", '
                           '"attributes": {"code": "SAVE5"}, "redeemed_at": "2026-03-06T12:00:00"}\n'
                           '{"customer_id": "C1", "kind": "coupon", "occurred_at": "2026-03-02", "amount": "5", '
                           '"attributes": {"code": "SAVE6", "redeemed": false}, "redeemed_at": null}\n',
                 name="coupons.jsonl")
    events_import_file(path=path, fmt="jsonl")
    redeemed, unused = Event.objects.filter(kind="coupon").order_by("occurred_at")
    assert redeemed.attributes == {"code": "SAVE5", "redeemed": True, "redeemed_at": "2026-03-06T12:00:00+00:00"}
    assert unused.attributes == {"code": "SAVE6", "redeemed": False}


def test_the_same_time_in_the_column_and_in_attributes_is_one_value():
    events_import_records(records=[{"customer_id": "C1", "kind": "ticket", "occurred_at": "2026-03-01",
                                    "closed_at": "2026-03-02T10:00:00+00:00",
                                    "attributes": {"status": "closed", "closed_at": "2026-03-02T11:00:00+01:00"}}])
    assert Event.objects.get().attributes["closed_at"] == "2026-03-02T10:00:00+00:00"


TICKET = {"customer_id": "C1", "kind": "ticket", "occurred_at": "2026-03-05T09:00:00Z"}
COUPON = {"customer_id": "C1", "kind": "coupon", "occurred_at": "2026-03-05T09:00:00Z", "amount": "5"}


@pytest.mark.parametrize(
    ("record", "field", "expected"),
    [
        ({**TICKET, "closed_at": "2026-03-04T23:00:00Z"}, "closed_at",
         "'2026-03-04T23:00:00Z' is before the ticket was opened (occurred_at 2026-03-05 09:00:00 UTC)"),
        ({**TICKET, "closed_at": "next week"}, "closed_at", "'next week' is not a date"),
        ({**TICKET, "closed_at": "2999-01-01"}, "closed_at", "'2999-01-01' is in the future"),
        ({**TICKET, "closed_at": ["2026-03-06"]}, "closed_at", "must be text, not a list"),
        ({**TICKET, "closed_at": "2026-03-06", "attributes": {"status": "open"}}, "closed_at",
         "is given but attributes say status is 'open'; a ticket with a closing time is closed"),
        ({**TICKET, "closed_at": "2026-03-06", "attributes": {"closed_at": "2026-03-07"}}, "closed_at",
         "'2026-03-06' differs from the closing time in attributes ('2026-03-07'); give it once"),
        ({**TICKET, "kind": "order", "amount": "5", "closed_at": "2026-03-06"}, "closed_at",
         "is only for a ticket; leave it empty for a order"),
        ({**COUPON, "redeemed_at": "2026-03-01"}, "redeemed_at",
         "'2026-03-01' is before the coupon was issued (occurred_at 2026-03-05 09:00:00 UTC)"),
        ({**COUPON, "redeemed_at": "2026-03-06", "attributes": {"redeemed": False}}, "redeemed_at",
         "is given but attributes say redeemed is false; a coupon with a redemption time is redeemed"),
        ({**TICKET, "redeemed_at": "2026-03-06"}, "redeemed_at", "is only for a coupon; leave it empty for a ticket"),
        ({**TICKET, "attributes": {"status": "closed", "closed_at": "2026-03-01T00:00:00Z"}}, "attributes",
         "a ticket's closed_at '2026-03-01T00:00:00Z' is before the ticket was opened"),
        ({**TICKET, "attributes": {"status": "open", "closed_at": "2026-03-06"}}, "attributes",
         "a ticket with status 'open' cannot have a closed_at"),
        ({**COUPON, "attributes": {"redeemed_at": "soon"}}, "attributes",
         "a coupon's redeemed_at must be an ISO datetime or null, not 'soon'"),
        ({**COUPON, "attributes": {"redeemed": False, "redeemed_at": "2026-03-06"}}, "attributes",
         "a coupon with redeemed false cannot have a redeemed_at"),
    ],
)
def test_bad_closing_and_redemption_times_are_row_problems_and_nothing_is_written(record, field, expected):
    good = {**TICKET, "customer_id": "C9", "closed_at": "2026-03-06"}
    with pytest.raises(CrmError) as err:
        events_import_records(records=[good, record])
    assert f"row 2, column '{field}': {expected}" in str(err.value)
    assert err.value.problems[0]["row"] == 2 and err.value.problems[0]["field"] == field
    assert Event.objects.count() == 0 and Customer.objects.count() == 0


def test_closing_time_errors_in_a_csv_name_the_row_and_the_line(tmp_path):
    text = ("customer_id,kind,occurred_at,closed_at\n"
            "C1,ticket,2026-03-05,2026-03-06\n"
            "\n"
            "C2,ticket,2026-03-05,2026-03-04\n")
    with pytest.raises(CrmError, match=r"row 2 \(line 4\), column 'closed_at': '2026-03-04' is before the ticket "
                                       r"was opened"):
        events_import_file(path=write(tmp_path, text), fmt="csv")
    assert Event.objects.count() == 0


def test_a_ticket_closed_the_moment_it_opened_is_fine():
    events_import_records(records=[{**TICKET, "closed_at": TICKET["occurred_at"]}])
    assert Event.objects.get().attributes["status"] == "closed"


# --- when the segment was recorded -----------------------------------------------------------


def _visit(day: int, **fields) -> dict:
    return {"customer_id": "C1", "kind": "visit", "occurred_at": f"2026-03-{day:02d}", **fields}


def test_a_new_customers_segment_is_known_from_the_import_not_from_their_first_event():
    started = timezone.now()
    events_import_records(records=[_visit(1, segment="vip")])
    customer = Customer.objects.get()
    assert customer.segment == "vip" and customer.segment_since >= started
    assert customer.first_seen_at == datetime.fromisoformat("2026-03-01T00:00:00+00:00")


def test_a_changed_segment_moves_its_time_and_the_same_segment_keeps_it():
    long_ago = timezone.now() - timedelta(days=300)
    customer = CustomerFactory(external_id="C1", segment="vip", segment_since=long_ago)
    events_import_records(records=[_visit(1, segment="vip"), _visit(2)])
    customer.refresh_from_db()
    assert customer.segment_since == long_ago  # nothing new about the segment
    started = timezone.now()
    events_import_records(records=[_visit(3, segment="lapsed")])
    customer.refresh_from_db()
    assert customer.segment == "lapsed" and customer.segment_since >= started


def test_a_replayed_batch_changes_no_segment_time():
    events_import_records(records=[_visit(1, segment="vip")])
    since = Customer.objects.get().segment_since
    events_import_records(records=[_visit(1, segment="vip")])
    assert Customer.objects.get().segment_since == since
