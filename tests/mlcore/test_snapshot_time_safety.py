"""A snapshot sees a ticket's closing, a coupon's redemption and the customer's segment only once they were known."""
import numpy as np
import pandas as pd

from mlcore.event_tokens import FIELDS, OFFSETS, event_tokens
from mlcore.snapshot import customer_snapshot, prepare_events

AS_OF = pd.Timestamp("2025-09-01", tz="UTC")
DAY = pd.Timedelta(days=1)
IMPORTED = AS_OF + 10 * DAY  # the shop's export that carried these rows came after the cutoff
CUSTOMERS = pd.DataFrame({"customer_id": [1], "segment": ["vip"], "segment_since": [AS_OF - 100 * DAY],
                          "first_seen_at": [AS_OF - 200 * DAY]})


def _order():
    return {"customer_id": 1, "kind": "order", "occurred_at": AS_OF - 60 * DAY, "amount": 50.0, "attributes": {},
            "imported_at": IMPORTED}


def _snap(rows, as_of=AS_OF, customers=CUSTOMERS):
    return customer_snapshot(pd.DataFrame([_order(), *rows]), customers, as_of, known_text_keys={})


def _coupon(attributes):
    return {"customer_id": 1, "kind": "coupon", "occurred_at": AS_OF - 20 * DAY, "amount": 10.0,
            "attributes": {"code": "SAVE10", **attributes}, "imported_at": IMPORTED}


def _ticket(attributes):
    return {"customer_id": 1, "kind": "ticket", "occurred_at": AS_OF - 9 * DAY, "text": "refund not processed",
            "attributes": {"ticket_id": "T1", **attributes}, "imported_at": IMPORTED}


def test_coupon_redeemed_after_the_cutoff_is_not_redeemed_at_it():
    coupon = _coupon({"redeemed": True, "redeemed_at": (AS_OF + 2 * DAY).isoformat()})
    at_cutoff = _snap([coupon])
    never = _snap([_coupon({"redeemed": False})])
    assert at_cutoff.features.loc[1, "coupons_365"] == 1
    assert at_cutoff.features.loc[1, "coupons_redeemed_365"] == 0
    assert "coupon 10.00\n" in at_cutoff.texts[0] + "\n" and " redeemed" not in at_cutoff.texts[0]
    # Exactly what the snapshot would be had the coupon never been redeemed: nothing of the future shows.
    pd.testing.assert_frame_equal(at_cutoff.features, never.features)
    assert at_cutoff.texts == never.texts and at_cutoff.text_keys == never.text_keys
    later = _snap([coupon], as_of=AS_OF + 3 * DAY)
    assert later.features.loc[1, "coupons_redeemed_365"] == 1 and "coupon 10.00 redeemed" in later.texts[0]


def test_coupon_redeemed_before_the_cutoff_counts():
    snap = _snap([_coupon({"redeemed": True, "redeemed_at": (AS_OF - 5 * DAY).isoformat()})])
    assert snap.features.loc[1, "coupons_redeemed_365"] == 1


def test_ticket_closed_after_the_cutoff_is_open_at_it():
    ticket = _ticket({"status": "closed", "closed_at": (AS_OF + DAY).isoformat()})
    snap = _snap([ticket])
    assert snap.features.loc[1, "tickets_open"] == 1
    assert round(float(snap.features.loc[1, "oldest_open_ticket_days"])) == 9
    assert "ticket open: refund not processed" in snap.texts[0]
    assert snap.evidence.loc[1, "ticket_text"] == "refund not processed"
    assert _snap([ticket], as_of=AS_OF + 2 * DAY).features.loc[1, "tickets_open"] == 0


def test_ticket_marked_closed_without_a_date_is_open_until_its_import():
    undated = _ticket({"status": "closed", "closed_at": None})
    before_import = _snap([undated])
    open_ticket = _snap([_ticket({"status": "open", "closed_at": None})])
    # Before the export that said "closed", the ticket is open, exactly as if it had never closed.
    assert before_import.features.loc[1, "tickets_open"] == 1
    pd.testing.assert_frame_equal(before_import.features, open_ticket.features)
    assert before_import.texts == open_ticket.texts and before_import.text_keys == open_ticket.text_keys
    after_import = _snap([undated], as_of=IMPORTED + DAY)
    assert after_import.features.loc[1, "tickets_open"] == 0
    assert f"closed {IMPORTED:%Y-%m-%d}" in after_import.texts[0]  # closed by the day the shop said so


def test_coupon_marked_redeemed_without_a_date_is_not_redeemed_until_its_import():
    undated = _coupon({"redeemed": True})
    assert _snap([undated]).features.loc[1, "coupons_redeemed_365"] == 0
    assert _snap([undated], as_of=IMPORTED + DAY).features.loc[1, "coupons_redeemed_365"] == 1


def test_without_an_import_time_an_undated_closing_never_counts():
    rows = [{k: v for k, v in r.items() if k != "imported_at"}
            for r in (_order(), _ticket({"status": "closed"}), _coupon({"redeemed": True}))]
    snap = customer_snapshot(pd.DataFrame(rows), CUSTOMERS, AS_OF + 400 * DAY)
    assert snap.features.loc[1, "tickets_open"] == 1 and snap.features.loc[1, "coupons_redeemed_365"] == 0


def test_an_undated_closing_re_sent_later_counts_from_the_re_send_not_the_first_import():
    """First imported open before the cutoff, re-sent closed (no date) after it: open at the cutoff."""
    resent = {**_ticket({"status": "closed"}), "imported_at": AS_OF - 5 * DAY, "state_imported_at": IMPORTED}
    assert _snap([resent]).features.loc[1, "tickets_open"] == 1
    assert _snap([resent], as_of=IMPORTED + DAY).features.loc[1, "tickets_open"] == 0
    coupon = {**_coupon({"redeemed": True}), "imported_at": AS_OF - 5 * DAY, "state_imported_at": IMPORTED}
    assert _snap([coupon]).features.loc[1, "coupons_redeemed_365"] == 0
    # A dated closing is the shop's own time, whenever it was re-sent.
    dated = {**_ticket({"status": "closed", "closed_at": (AS_OF - DAY).isoformat()}), "state_imported_at": IMPORTED}
    assert _snap([dated]).features.loc[1, "tickets_open"] == 0


def test_ticket_tokens_stay_open_until_an_undated_closing_was_imported():
    ev = prepare_events(pd.DataFrame([_order(), _ticket({"status": "closed"})]))
    state = FIELDS.index("state")
    at_cutoff = event_tokens(ev, np.array([1]), AS_OF, max_events=4)
    assert at_cutoff[0, -1, state] - OFFSETS["state"] == 1  # open
    after = event_tokens(ev, np.array([1]), IMPORTED + DAY, max_events=4)
    assert after[0, -1, state] - OFFSETS["state"] == 2  # closed


def test_segment_recorded_after_the_cutoff_is_not_visible_at_it():
    changed = CUSTOMERS.assign(segment="lapsed vip", segment_since=AS_OF + 5 * DAY)
    unknown = CUSTOMERS.assign(segment="")
    at_cutoff = _snap([], customers=changed)
    assert "segment" not in at_cutoff.texts[0].split("\n")[0]
    # As if the customer had no segment at all: neither the text nor its cache key gives it away.
    assert at_cutoff.texts == _snap([], customers=unknown).texts
    assert at_cutoff.text_keys == _snap([], customers=unknown).text_keys
    assert _snap([], customers=CUSTOMERS).texts[0].split("\n")[0].endswith(", segment vip")
    later = _snap([], as_of=AS_OF + 6 * DAY, customers=changed)
    assert later.texts[0].split("\n")[0].endswith(", segment lapsed vip")


def test_segment_without_a_recording_time_is_never_shown():
    snap = _snap([], customers=CUSTOMERS.drop(columns=["segment_since"]))
    assert "segment" not in snap.texts[0]
