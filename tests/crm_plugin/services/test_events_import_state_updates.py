"""Re-sending a ticket that has closed or a coupon that was redeemed since its import: the stored event moves forward."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.events.importing import events_import_file, events_import_records
from crm_plugin.models import Customer, Event

pytestmark = pytest.mark.django_db

OPEN = {"customer_id": "C1", "kind": "ticket", "occurred_at": "2026-03-01T09:00:00Z", "text": "refund late",
        "source_id": "T-1", "attributes": {"ticket_id": "T-1", "status": "open"}}
CLOSED = {**OPEN, "attributes": {"ticket_id": "T-1", "status": "closed"}}
UNUSED = {"customer_id": "C1", "kind": "coupon", "occurred_at": "2026-03-02", "amount": "5", "source_id": "CP-1",
          "attributes": {"code": "SAVE5", "redeemed": False}}
REDEEMED = {**UNUSED, "attributes": {"code": "SAVE5", "redeemed": True}}


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def ticket() -> Event:
    return Event.objects.get(source_id="T-1")


def test_a_ticket_re_sent_closed_closes_the_stored_ticket():
    events_import_records(records=[OPEN])
    first_import = ticket().imported_at
    started = timezone.now()
    summary = events_import_records(records=[{**CLOSED, "closed_at": "2026-03-04T10:30:00+02:00"}])
    assert (summary.added, summary.updated, summary.tickets_closed, summary.skipped) == (0, 1, 1, 0)
    assert "0 events added, 1 events updated (1 ticket closed), 0 already imported" in str(summary)
    stored = ticket()
    assert Event.objects.count() == 1
    assert stored.attributes == {"ticket_id": "T-1", "status": "closed", "closed_at": "2026-03-04T08:30:00+00:00"}
    assert stored.imported_at == first_import and stored.state_imported_at >= started


def test_a_ticket_without_a_status_closes_too_and_its_other_fields_stay():
    bare = {**OPEN, "attributes": {"ticket_id": "T-1"}, "name": "Ann"}
    events_import_records(records=[bare])
    events_import_records(records=[{**bare, "attributes": {"ticket_id": "T-1", "status": "closed"}, "name": "Bob"}])
    assert ticket().attributes == {"ticket_id": "T-1", "status": "closed"}
    # Customer fields still come only from new events: a re-sent state is not new data about the customer.
    assert Customer.objects.get().name == "Ann"


def test_replaying_the_re_send_is_a_no_op():
    events_import_records(records=[OPEN])
    events_import_records(records=[CLOSED])
    closed_since = ticket().state_imported_at
    again = events_import_records(records=[CLOSED])
    assert (again.added, again.updated, again.skipped) == (0, 0, 1)
    assert "0 events added, 1 already imported" in str(again) and "updated" not in str(again)
    assert ticket().state_imported_at == closed_since  # the closing stays dated by the import that said so


def test_a_csv_export_of_today_closes_some_tickets_and_adds_others(tmp_path):
    header = "customer_id,kind,occurred_at,text,source_id,closed_at\n"
    day1 = header + ("C1,ticket,2026-03-01T09:00:00Z,refund late,T-1,\n"
                     "C2,ticket,2026-03-01T10:00:00Z,wrong size,T-2,\n")
    day5 = header + ("C1,ticket,2026-03-01T09:00:00Z,refund late,T-1,2026-03-03\n"
                     "C2,ticket,2026-03-01T10:00:00Z,wrong size,T-2,\n"
                     "C3,ticket,2026-03-04T10:00:00Z,late parcel,T-3,\n")
    events_import_file(path=write(tmp_path, day1, "day1.csv"), fmt="csv")
    summary = events_import_file(path=write(tmp_path, day5, "day5.csv"), fmt="csv")
    assert (summary.rows, summary.added, summary.tickets_closed, summary.skipped) == (3, 1, 1, 1)
    assert ticket().attributes == {"status": "closed", "closed_at": "2026-03-03T00:00:00+00:00"}
    assert Event.objects.get(source_id="T-2").attributes == {}
    assert Event.objects.get(source_id="T-2").state_imported_at is None


def test_a_coupon_re_sent_redeemed_is_redeemed():
    events_import_records(records=[UNUSED])
    summary = events_import_records(records=[{**REDEEMED, "redeemed_at": "2026-03-06T12:00:00Z"}])
    assert (summary.added, summary.coupons_redeemed, summary.tickets_closed) == (0, 1, 0)
    assert "1 events updated (1 coupon redeemed)" in str(summary)
    coupon = Event.objects.get(source_id="CP-1")
    assert coupon.attributes == {"code": "SAVE5", "redeemed": True, "redeemed_at": "2026-03-06T12:00:00+00:00"}
    assert coupon.state_imported_at is not None
    # Undated, and a coupon that never said "redeemed": false.
    events_import_records(records=[{**UNUSED, "source_id": "CP-2", "attributes": {"code": "SAVE6"}}])
    events_import_records(records=[{**UNUSED, "source_id": "CP-2", "attributes": {"code": "SAVE6", "redeemed": True}}])
    assert Event.objects.get(source_id="CP-2").attributes == {"code": "SAVE6", "redeemed": True}


# --- what stays refused --------------------------------------------------------------------------


def _refused(records) -> CrmError:
    with pytest.raises(CrmError) as err:
        events_import_records(records=records)
    return err.value


@pytest.mark.parametrize(
    ("stored", "resent", "expected"),
    [
        (CLOSED, OPEN,
         "'T-1' is stored as a closed ticket, and a re-send cannot reopen it: a ticket's state only moves forward "
         "(open to closed); send a reopened ticket as a new event with a new source_id"),
        ({**CLOSED, "closed_at": "2026-03-03T10:00:00Z"}, {**CLOSED, "closed_at": "2026-03-04T10:00:00Z"},
         "'T-1' is stored as closed at 2026-03-03 10:00:00 UTC; a re-send cannot change its closing time "
         "(here 2026-03-04 10:00:00 UTC)"),
        ({**CLOSED, "closed_at": "2026-03-03T10:00:00Z"}, CLOSED,
         "'T-1' is stored as closed at 2026-03-03 10:00:00 UTC; a re-send cannot change its closing time "
         "(here none)"),
        (CLOSED, {**CLOSED, "closed_at": "2026-03-03T10:00:00Z"},
         "'T-1' is stored as closed without a closing time; a re-send cannot add one (closed_at 2026-03-03 10:00:00 "
         "UTC): the closing counts from the import that first said so"),
        ({**REDEEMED, "redeemed_at": "2026-03-04"}, UNUSED,
         "'CP-1' is stored as a redeemed coupon, and a re-send cannot make it unused again: a coupon's state only "
         "moves forward (unused to redeemed)"),
        ({**REDEEMED, "redeemed_at": "2026-03-04"}, {**REDEEMED, "redeemed_at": "2026-03-05"},
         "'CP-1' is stored as redeemed at 2026-03-04 00:00:00 UTC; a re-send cannot change its redemption time "
         "(here 2026-03-05 00:00:00 UTC)"),
        # Closing the ticket and changing anything else: the general rule.
        (OPEN, {**CLOSED, "text": "refund very late"},
         "'T-1' is already the id of a different stored event; a re-sent event must repeat it exactly (same "
         "customer, time and content), changing at most its state from open to closed, a new event needs a new "
         "source_id"),
        (OPEN, {**CLOSED, "attributes": {"ticket_id": "T-9", "status": "closed"}},
         "'T-1' is already the id of a different stored event"),
        (OPEN, {**CLOSED, "occurred_at": "2026-03-01T09:00:01Z"}, "'T-1' is already the id of a different stored event"),
        (UNUSED, {**REDEEMED, "amount": "6", "redeemed_at": "2026-03-04"},
         "'CP-1' is already the id of a different stored event; a re-sent event must repeat it exactly (same "
         "customer, time and content), changing at most its state from unused to redeemed"),
    ],
    ids=["reopened", "other-closing-time", "closing-time-dropped", "closing-time-added", "unredeemed",
         "other-redemption-time", "closed-and-other-text", "closed-and-other-attribute", "closed-and-other-time",
         "redeemed-and-other-amount"],
)
def test_other_changes_are_refused_with_the_row_and_nothing_is_written(stored, resent, expected):
    events_import_records(records=[stored])
    before = list(Event.objects.values())
    new = {"customer_id": "C9", "kind": "visit", "occurred_at": "2026-03-05", "source_id": "V-1"}
    # The new events before it in the same batch are rolled back too.
    err = _refused([new, {**OPEN, "source_id": "T-OK"}, resent])
    assert err.problems[0]["row"] == 3 and err.problems[0]["field"] == "source_id"
    assert err.problems[0]["message"].startswith(expected)
    assert f"row 3, column 'source_id': {expected}" in str(err)
    assert list(Event.objects.values()) == before and not Customer.objects.filter(external_id="C9").exists()


def test_a_state_change_in_a_batch_with_a_bad_row_is_rolled_back():
    events_import_records(records=[OPEN])
    err = _refused([CLOSED, {"customer_id": "C2", "kind": "order", "occurred_at": "yesterday", "amount": "5"}])
    assert err.problems[0]["row"] == 2 and err.problems[0]["field"] == "occurred_at"
    assert ticket().attributes == OPEN["attributes"] and ticket().state_imported_at is None


def test_another_customers_ticket_id_is_refused_without_saying_whose_or_what_it_is():
    events_import_records(records=[OPEN])
    err = _refused([{**CLOSED, "customer_id": "C2"}])
    message = err.problems[0]["message"]
    assert message.startswith("'T-1' is already the id of a different stored event")
    assert "stored as" not in message and "C1" not in message
    assert ticket().attributes == OPEN["attributes"]


def test_a_closing_time_is_checked_as_on_a_first_import():
    events_import_records(records=[OPEN])
    err = _refused([{**CLOSED, "closed_at": "2026-02-28"}])
    assert err.problems[0]["field"] == "closed_at" and "is before the ticket was opened" in err.problems[0]["message"]
    future = (timezone.now() + timedelta(days=3)).date().isoformat()
    assert "is in the future" in _refused([{**CLOSED, "closed_at": future}]).problems[0]["message"]
    assert ticket().attributes == OPEN["attributes"]


def test_an_old_export_after_a_newer_one_is_refused_row_by_row(tmp_path):
    """Importing the day-1 export again after the day-5 one would reopen the ticket: refused, not skipped."""
    header = "customer_id,kind,occurred_at,text,source_id,closed_at\n"
    day1 = write(tmp_path, header + "C2,visit,2026-03-01T08:00:00Z,,V-1,\n"
                                    "C1,ticket,2026-03-01T09:00:00Z,refund late,T-1,\n", "day1.csv")
    day5 = write(tmp_path, header + "C1,ticket,2026-03-01T09:00:00Z,refund late,T-1,2026-03-03\n", "day5.csv")
    events_import_file(path=day1, fmt="csv")
    events_import_file(path=day5, fmt="csv")
    with pytest.raises(CrmError, match=r"row 2 \(line 3\), column 'source_id': 'T-1' is stored as a closed ticket, "
                                       r"and a re-send cannot reopen it"):
        events_import_file(path=day1, fmt="csv")
    assert Event.objects.count() == 2 and ticket().attributes["status"] == "closed"


def test_two_versions_of_one_ticket_in_one_batch_stay_ambiguous():
    err = _refused([OPEN, CLOSED])
    assert err.problems[0]["message"] == "'T-1' is also the id of row 1, a different event"


def test_the_closing_is_dated_by_the_re_send_not_the_first_import():
    events_import_records(records=[OPEN])
    Event.objects.update(imported_at=datetime.fromisoformat("2026-03-01T12:00:00+00:00"))
    started = timezone.now()
    events_import_records(records=[CLOSED])
    stored = ticket()
    assert stored.imported_at.isoformat() == "2026-03-01T12:00:00+00:00"
    assert started <= stored.state_imported_at <= timezone.now()
