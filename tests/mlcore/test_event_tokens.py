"""Event tokens: newest last, the future invisible, a ticket closed only once its closing is in the past."""
import numpy as np
import pandas as pd

from mlcore.event_tokens import FIELDS, KINDS, OFFSETS, PAD, VOCAB_SIZE, event_tokens
from mlcore.snapshot import prepare_events

T0 = pd.Timestamp("2025-03-01")


def _events():
    return prepare_events(pd.DataFrame([
        {"customer_id": 1, "kind": "order", "occurred_at": T0, "amount": 40.0, "attributes": {"category": "shoes"}},
        {"customer_id": 1, "kind": "ticket", "occurred_at": T0 + pd.Timedelta(days=10),
         "attributes": {"status": "closed", "closed_at": (T0 + pd.Timedelta(days=20)).isoformat()}},
        {"customer_id": 1, "kind": "review", "occurred_at": T0 + pd.Timedelta(days=12), "rating": 2},
        {"customer_id": 2, "kind": "visit", "occurred_at": T0 + pd.Timedelta(days=1)},
        {"customer_id": 1, "kind": "order", "occurred_at": T0 + pd.Timedelta(days=40), "amount": 900.0},
    ]))


def test_sequences_are_right_aligned_newest_last_and_never_read_the_future():
    ev = _events()
    as_of = T0 + pd.Timedelta(days=15)
    tok = event_tokens(ev, np.array([1, 2, 3]), as_of, max_events=8)
    assert tok.shape == (3, 8, len(FIELDS)) and tok.dtype == np.uint8 and VOCAB_SIZE < 256
    kinds = tok[0, :, 0]
    assert (kinds[:5] == PAD).all()  # 3 events before as_of, the order on day 40 is the future
    assert [KINDS[k - OFFSETS["kind"]] for k in kinds[5:]] == ["order", "ticket", "review"]
    assert (tok[2] == PAD).all()  # no history: all padding
    # The ticket closes on day 20: open at day 15, closed at day 25.
    state = FIELDS.index("state")
    assert tok[0, 6, state] - OFFSETS["state"] == 1
    later = event_tokens(ev, np.array([1]), T0 + pd.Timedelta(days=25), max_events=8)
    assert later[0, 6, state] - OFFSETS["state"] == 2
    # Ages are relative to as_of; events at or after it change nothing.
    cut = ev[ev["occurred_at"] < as_of]
    np.testing.assert_array_equal(event_tokens(cut, np.array([1, 2, 3]), as_of, max_events=8), tok)
    # Only the newest events are kept.
    assert [KINDS[k - OFFSETS["kind"]] for k in event_tokens(ev, np.array([1]), as_of, max_events=2)[0, :, 0]] == [
        "ticket", "review"]
