"""The import service: all or nothing, idempotent, clear errors with row numbers."""
from __future__ import annotations

import json
from datetime import timezone
from decimal import Decimal

import pytest

from crm_plugin.errors import CrmError
from crm_plugin.models import Customer, Event
from crm_plugin.events.importing import events_import_file, events_import_records
from tests.crm_plugin.factories import AccountOwnerFactory, CustomerFactory

pytestmark = pytest.mark.django_db

GOOD_TX = "customer_id,timestamp,amount,quantity\nC1,2026-01-05,10.50,1\nC2,20260106,20,2\nC1,2026-02-01T10:00:00+02:00,5.25,\n"


def write(tmp_path, text, name="data.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_transactions_create_customers_and_orders(tmp_path):
    summary = events_import_file(path=write(tmp_path, GOOD_TX), fmt="transactions")
    assert (summary.rows, summary.added, summary.customers_created) == (3, 3, 2)
    c1 = Customer.objects.get(external_id="C1")
    orders = list(c1.events.order_by("occurred_at"))
    assert [o.amount for o in orders] == [Decimal("10.50"), Decimal("5.25")]
    assert orders[1].occurred_at.isoformat() == "2026-02-01T08:00:00+00:00"
    assert c1.first_seen_at.date().isoformat() == "2026-01-05"
    assert Event.objects.get(customer__external_id="C2").occurred_at.date().isoformat() == "2026-01-06"


def test_reimport_adds_nothing(tmp_path):
    path = write(tmp_path, GOOD_TX)
    events_import_file(path=path, fmt="transactions")
    again = events_import_file(path=path, fmt="transactions")
    assert (again.added, again.skipped, again.customers_created) == (0, 3, 0)
    assert Event.objects.count() == 3


def test_identical_rows_in_one_file_are_two_events_and_stay_two(tmp_path):
    path = write(tmp_path, "customer_id,timestamp,amount\nC1,2026-01-05,10\nC1,2026-01-05,10\n")
    assert events_import_file(path=path, fmt="transactions").added == 2
    assert events_import_file(path=path, fmt="transactions").added == 0
    assert Event.objects.count() == 2


def test_bad_date_in_row_3_names_row_and_column_and_writes_nothing(tmp_path):
    CustomerFactory(external_id="C0")
    before = (Event.objects.count(), Customer.objects.count())
    text = "customer_id,timestamp,amount\nC1,2026-01-05,10\nC2,2026-01-06,10\nC3,2026-13-45,10\nC4,2026-01-07,10\n"
    with pytest.raises(CrmError) as err:
        events_import_file(path=write(tmp_path, text), fmt="transactions")
    message = str(err.value)
    assert "row 3 (line 4), column 'timestamp'" in message
    assert "'2026-13-45' is not a date" in message
    assert "nothing was imported" in message
    assert "line N is the line in the file, as a spreadsheet numbers it, with the header as line 1" in message
    assert (Event.objects.count(), Customer.objects.count()) == before
    assert err.value.problems[0]["row"] == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customer_id,amount\nC1,10\n", "missing column(s): timestamp"),
        ("customer_id,timestamp,amount\n", "header but no data rows"),
        ("customer_id,timestamp,amount\nC1,2026-01-05,ten\n", "row 1 (line 2), column 'amount': 'ten' is not a number"),
        ("customer_id,timestamp,amount\nC1,2026-01-05,\n", "column 'amount': is empty"),
        ("customer_id,timestamp,amount,quantity\nC1,2026-01-05,1,-2\n", "column 'quantity': -2 is out of range"),
        ("customer_id,timestamp,amount,quantity\nC1,2026-01-05,1,1.5\n", "'1.5' is not a whole number"),
        ("customer_id,timestamp,amount\nC1,2999-01-05,1\n", "is in the future"),
        ("customer_id,timestamp,amount\n,2026-01-05,1\n", "column 'customer_id': is empty"),
        ("customer_id,timestamp,amount,colour\nC1,2026-01-05,1,red\n", "unknown column(s): colour"),
        ("customer_id,timestamp,amount\nC1,2026-01-05\n", "has 2 fields, the header has 3"),
        ("customer_id,timestamp,amount\n" + "C" * 200 + ",2026-01-05,1\n", "is 200 characters long; the limit is 128"),
    ],
)
def test_bad_transactions_get_clear_errors(tmp_path, text, expected):
    with pytest.raises(CrmError) as err:
        events_import_file(path=write(tmp_path, text), fmt="transactions")
    assert expected in str(err.value)
    assert Event.objects.count() == 0


def test_empty_file(tmp_path):
    with pytest.raises(CrmError, match="the file is empty"):
        events_import_file(path=write(tmp_path, ""), fmt="transactions")


def test_wrong_encoding_names_the_line(tmp_path):
    text = "customer_id,timestamp,amount\nC1,2026-01-05,1\nMüller,2026-01-05,1\n".encode("latin-1")
    with pytest.raises(CrmError, match=r"line 3: is not UTF-8 text \(byte 2\); save the file as UTF-8") as err:
        events_import_file(path=write(tmp_path, text), fmt="transactions")
    assert len(err.value.problems) == 1  # the unreadable row is not reported twice
    assert Customer.objects.count() == 0


def test_utf8_bom_is_accepted(tmp_path):
    path = write(tmp_path, "\ufeffcustomer_id,timestamp,amount\nC1,2026-01-05,1\n")
    assert events_import_file(path=path, fmt="transactions").added == 1


def test_first_20_problems_then_a_count(tmp_path):
    rows = "".join(f"C{i},not-a-date,1\n" for i in range(25))
    with pytest.raises(CrmError) as err:
        events_import_file(path=write(tmp_path, "customer_id,timestamp,amount\n" + rows), fmt="transactions")
    assert "25 problems" in str(err.value)
    assert "... and 5 more" in str(err.value)
    assert len(err.value.problems) == 20


def test_csv_events_with_kind_column_and_customer_fields(tmp_path):
    owner = AccountOwnerFactory(email="ana@shop.example")
    text = (
        "customer_id,kind,occurred_at,amount,rating,text,attributes,name,segment,owner_email\n"
        'C9,review,2026-03-01,,1,arrived broken,"{""product"": ""mug""}",Ada,vip,ANA@shop.example\n'
        'C9,ticket,2026-03-02,,,refund not processed,"{""status"": ""open""}",,,\n'
    )
    summary = events_import_file(path=write(tmp_path, text), fmt="csv")
    assert summary.added == 2
    customer = Customer.objects.get(external_id="C9")
    assert (customer.name, customer.segment, customer.owner) == ("Ada", "vip", owner)
    review = customer.events.get(kind="review")
    assert (review.rating, review.text, review.attributes) == (1, "arrived broken", {"product": "mug"})


def test_csv_with_kind_option_and_errors(tmp_path):
    ok = write(tmp_path, "customer_id,occurred_at\nC1,2026-03-01\n")
    assert events_import_file(path=ok, fmt="csv", kind="visit").added == 1
    with pytest.raises(CrmError, match="missing column\\(s\\): kind"):
        events_import_file(path=ok, fmt="csv")
    bad = write(tmp_path, "customer_id,kind,occurred_at,rating\nC1,review,2026-03-01,7\nC1,parcel,2026-03-01,\n", "bad.csv")
    with pytest.raises(CrmError) as err:
        events_import_file(path=bad, fmt="csv")
    assert "row 1 (line 2), column 'rating': 7 is out of range (1 to 5)" in str(err.value)
    assert "row 2 (line 3), column 'kind': 'parcel' is not a kind" in str(err.value)


def test_unknown_owner_email_is_an_error(tmp_path):
    path = write(tmp_path, "customer_id,kind,occurred_at,owner_email\nC1,visit,2026-03-01,nobody@x.example\n")
    with pytest.raises(CrmError, match="no account owner with email 'nobody@x.example'"):
        events_import_file(path=path, fmt="csv")


def test_jsonl(tmp_path):
    lines = [
        {"customer_id": "C1", "kind": "order", "occurred_at": "2026-03-01T10:00:00Z", "amount": 12.5, "quantity": 2,
         "attributes": {"category": "shoes"}, "source_id": "shop-order-1"},
        {"customer_id": "C1", "kind": "visit", "occurred_at": "2026-03-02"},
    ]
    path = write(tmp_path, "\n".join(json.dumps(x) for x in lines) + "\n\n", "events.jsonl")
    assert events_import_file(path=path, fmt="jsonl").added == 2
    assert Event.objects.get(source_id="shop-order-1").attributes == {"category": "shoes"}
    assert events_import_file(path=path, fmt="jsonl").added == 0


def test_jsonl_bad_line(tmp_path):
    path = write(tmp_path, '{"customer_id": "C1", "kind": "visit", "occurred_at": "2026-03-02"}\n{oops\n', "e.jsonl")
    with pytest.raises(CrmError, match="row 2: is not valid JSON"):
        events_import_file(path=path, fmt="jsonl")
    assert Event.objects.count() == 0


def test_order_needs_amount_and_review_needs_rating():
    with pytest.raises(CrmError) as err:
        events_import_records(records=[
            {"customer_id": "C1", "kind": "order", "occurred_at": "2026-03-01"},
            {"customer_id": "C1", "kind": "review", "occurred_at": "2026-03-01"},
            "not an object",
        ])
    fields = [(p["row"], p["field"]) for p in err.value.problems]
    assert fields == [(1, "amount"), (2, "rating"), (3, None)]


def test_batch_limits():
    with pytest.raises(CrmError, match="non-empty list"):
        events_import_records(records=[])
    with pytest.raises(CrmError, match="send at most 10,000 per request"):
        events_import_records(records=[{}] * 10_001)


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("2026-03-01", "2026-03-01T00:00:00+00:00"),  # a date alone is UTC midnight
        ("20260301", "2026-03-01T00:00:00+00:00"),
        ("2026-03-01T10:30:00", "2026-03-01T10:30:00+00:00"),  # naive is UTC, not TIME_ZONE
        ("2026-03-01 10:30", "2026-03-01T10:30:00+00:00"),
        ("2026-03-01T10:30:00Z", "2026-03-01T10:30:00+00:00"),
        ("2026-03-01T10:30:00-05:00", "2026-03-01T15:30:00+00:00"),
    ],
)
def test_timestamps_are_stored_in_utc(tmp_path, settings, raw, stored):
    settings.TIME_ZONE = "Europe/Berlin"
    path = write(tmp_path, f"customer_id,timestamp,amount\nC1,{raw},1\n")
    events_import_file(path=path, fmt="transactions")
    event = Event.objects.get()
    assert event.occurred_at.astimezone(timezone.utc).isoformat() == stored
    # Stored so that the ORM's own comparisons find it (SQLite compares datetimes as text).
    assert Event.objects.filter(occurred_at=event.occurred_at).count() == 1
    assert Event.objects.filter(occurred_at__lte=event.occurred_at).count() == 1
    assert Customer.objects.filter(first_seen_at=event.occurred_at).count() == 1


def test_line_over_one_megabyte_is_refused_and_later_rows_keep_their_numbers(tmp_path):
    long_row = "C1,visit,2026-03-01,\"" + "x" * 2_500_000 + "\"\n"  # read in bounded chunks, never whole
    path = write(tmp_path, "customer_id,kind,occurred_at,text\n" + long_row + "C2,visit,2026-03-01,ok\nC3,visit,never,\n")
    with pytest.raises(CrmError) as err:
        events_import_file(path=path, fmt="csv")
    assert "line 2: is 2,500,02" in str(err.value)
    assert "bytes long; the limit is 1,000,000" in str(err.value)
    assert "row 3 (line 4), column 'occurred_at': 'never' is not a date" in str(err.value)
    assert err.value.problems[1]["row"] == 3
    assert Customer.objects.count() == 0


def test_non_utf8_header_is_one_problem(tmp_path):
    path = write(tmp_path, "customer_id,timestamp,amount\u00e9\nC1,2026-01-05,1\n", encoding="latin-1")
    with pytest.raises(CrmError) as err:
        events_import_file(path=path, fmt="transactions")
    assert [p["line"] for p in err.value.problems] == [1]


def test_text_over_its_limit_is_refused():
    with pytest.raises(CrmError, match="row 1, column 'text': is 10001 characters long; the limit is 10000"):
        events_import_records(records=[{"customer_id": "C1", "kind": "visit", "occurred_at": "2026-03-01",
                                        "text": "x" * 10_001}])


def test_kind_option_disagreeing_with_the_row():
    with pytest.raises(CrmError, match="column 'kind': is 'order' but --kind visit was given"):
        events_import_records(records=[{"customer_id": "C1", "kind": "order", "occurred_at": "2026-03-01",
                                        "amount": 1}], kind="visit")


def test_attributes_must_be_a_json_object(tmp_path):
    path = write(tmp_path, 'customer_id,kind,occurred_at,attributes\nC1,visit,2026-03-01,"[1, 2]"\nC1,visit,2026-03-01,{oops\n')
    with pytest.raises(CrmError) as err:
        events_import_file(path=path, fmt="csv")
    assert "row 1 (line 2), column 'attributes': must be a JSON object" in str(err.value)
    assert "row 2 (line 3), column 'attributes': is not valid JSON" in str(err.value)


def test_one_source_id_for_two_different_events_is_refused():
    order = {"customer_id": "C1", "kind": "order", "occurred_at": "2026-03-01", "amount": "5", "source_id": "o-1"}
    with pytest.raises(CrmError, match="row 3, column 'source_id': 'o-1' is also the id of row 1, a different event"):
        events_import_records(records=[order, {**order, "source_id": "o-2"}, {**order, "amount": "6"}])
    assert Event.objects.count() == 0
    # The same event repeated word for word is harmless: stored once.
    summary = events_import_records(records=[order, order])
    assert (summary.added, summary.skipped) == (1, 1)


def test_customer_fields_last_value_in_the_file_wins(tmp_path):
    customer = CustomerFactory(external_id="C1", name="Old Name", email="old@x.example", segment="retail")
    text = ("customer_id,kind,occurred_at,name,email,segment\n"
            "C1,visit,2026-03-01,Zed First,,\n"
            "C1,visit,2026-03-02,Ada Later,ada@x.example,\n"
            "C1,visit,2026-03-03,,,\n")
    assert events_import_file(path=write(tmp_path, text), fmt="csv").customers_created == 0
    updated_before = customer.updated_at
    customer.refresh_from_db()
    assert (customer.name, customer.email, customer.segment) == ("Ada Later", "ada@x.example", "retail")
    assert customer.updated_at > updated_before


@pytest.mark.parametrize(
    ("kind", "attributes", "expected"),
    [
        ("ticket", {"status": "pending"}, "a ticket's status must be 'open' or 'closed'"),
        ("ticket", {"status": "closed", "closed_at": "last week"}, "a ticket's closed_at must be an ISO datetime or null"),
        ("coupon", {"code": "SAVE5", "redeemed": "yes"}, "a coupon's redeemed must be true or false"),
        ("visit", {"pages": -1}, "a visit's pages must be a number of at least 0"),
    ],
)
def test_attribute_conventions_are_checked(kind, attributes, expected):
    record = {"customer_id": "C1", "kind": kind, "occurred_at": "2026-03-01", "attributes": attributes}
    with pytest.raises(CrmError, match="row 1, column 'attributes': " + expected):
        events_import_records(records=[record])


def test_attribute_conventions_accept_the_documented_shapes():
    base = {"customer_id": "C1", "occurred_at": "2026-03-01"}
    summary = events_import_records(records=[
        {**base, "kind": "ticket", "text": "late", "attributes": {"ticket_id": "T1", "status": "closed",
                                                                  "closed_at": "2026-03-02T10:00:00Z"}},
        {**base, "kind": "ticket", "attributes": {"status": "open", "closed_at": None}},
        {**base, "kind": "coupon", "amount": "5", "attributes": {"code": "SAVE5", "redeemed": True}},
        {**base, "kind": "visit", "attributes": {"pages": 3, "duration_s": 41.5}},
    ])
    assert summary.added == 4
