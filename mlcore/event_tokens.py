"""Event tokens: each customer's behaviour before a cutoff as a short sequence from a small vocabulary.

Not English: one event is a handful of tokens, one per field - kind, log-bucketed amount, gap
since the previous event, age before the cutoff, rating, ticket state (open or closed *at the
cutoff*), category (hashed) - all ids in one shared vocabulary of VOCAB_SIZE (< 256, so a
sequence is uint8). The behaviour BERT sums an event's field embeddings into one position, so a
sequence of 256 events costs 256 positions, newest last (the end of the history is what a
cut-off must keep).

Time-safety: only events with occurred_at < as_of are read, ages and gaps are relative to
as_of, and a ticket counts as closed only when its closed_at is before as_of (a ticket marked
closed without a date: its import time, see mlcore.snapshot.prepare_events). The coupon token
does not say whether the coupon was redeemed: a new state would change the vocabulary, and with
it every trained behaviour model.
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

MAX_EVENTS = 256
FIELDS = ("kind", "amount", "gap", "age", "rating", "state", "category")
N_FIELDS = len(FIELDS)

PAD, MASK = 0, 1
KINDS = ("order", "visit", "review", "ticket", "return", "coupon", "other")
AMOUNT_EDGES = np.array([5, 10, 20, 35, 60, 100, 170, 300, 500, 1000], dtype=np.float64)  # roughly log-spaced
DAY_EDGES = np.array([1, 2, 4, 8, 15, 31, 61, 121, 366], dtype=np.float64)  # <1d, 1, 2-3, 4-7, 8-14, .. , > 1 year
N_CATEGORY = 16
STATES = ("none", "ticket_open", "ticket_closed")

# Each field owns a contiguous id range after the two specials; "none" is the first id of a range.
_SIZES = {"kind": len(KINDS), "amount": len(AMOUNT_EDGES) + 2, "gap": len(DAY_EDGES) + 2,
          "age": len(DAY_EDGES) + 1, "rating": 6, "state": len(STATES), "category": N_CATEGORY + 1}
OFFSETS: dict[str, int] = {}
_next = 2
for _name in FIELDS:
    OFFSETS[_name] = _next
    _next += _SIZES[_name]
VOCAB_SIZE = _next
FIELD_SIZES = dict(_SIZES)
assert VOCAB_SIZE < 256


def _category_bucket(item: str) -> int:
    return 0 if not item else 1 + zlib.crc32(item.encode()) % N_CATEGORY


def event_tokens(events: pd.DataFrame, customer_ids: np.ndarray, as_of, *, max_events: int = MAX_EVENTS) -> np.ndarray:
    """uint8 [n, max_events, N_FIELDS]: the last `max_events` events before `as_of` per customer, newest last.

    `events` is a prepared frame (mlcore.snapshot.prepare_events: naive UTC, sorted by customer and
    time). Sequences are right-aligned: padding (PAD in every field) comes first, so position -1
    is always the newest event.
    """
    as_of = pd.Timestamp(as_of)
    if as_of.tzinfo is not None:
        as_of = as_of.tz_convert("UTC").tz_localize(None)
    ids = pd.Index(np.asarray(customer_ids, dtype=np.int64))
    out = np.zeros((len(ids), max_events, N_FIELDS), dtype=np.uint8)
    if not len(events) or not len(ids):
        return out
    ev = events[(events["occurred_at"] < as_of).to_numpy()]
    ev = ev[ev["customer_id"].isin(ids).to_numpy()]
    if not len(ev):
        return out
    cust = ev["customer_id"].to_numpy(dtype=np.int64)
    at = ev["occurred_at"].to_numpy()
    # Gap since the previous event of the same customer (before taking the tail, so the oldest kept has one).
    gap = np.full(len(ev), np.nan)
    same = np.r_[False, cust[1:] == cust[:-1]]
    gap[same] = (at[1:] - at[:-1])[same[1:]] / np.timedelta64(1, "D")
    from_end = ev.groupby("customer_id", sort=False).cumcount(ascending=False).to_numpy()
    keep = from_end < max_events
    ev, cust, at, gap, from_end = ev[keep], cust[keep], at[keep], gap[keep], from_end[keep]

    kind = ev["kind"].to_numpy(dtype=object)
    kind_id = np.array([KINDS.index(k) if k in KINDS else len(KINDS) - 1 for k in kind], dtype=np.int64)
    amount = ev["amount"].to_numpy(dtype=np.float64)
    amount_id = np.where(np.isnan(amount), 0, 1 + np.searchsorted(AMOUNT_EDGES, np.abs(np.nan_to_num(amount))))
    gap_id = np.where(np.isnan(gap), 0, 1 + np.searchsorted(DAY_EDGES, np.nan_to_num(gap), side="right"))
    age = (as_of.to_datetime64() - at) / np.timedelta64(1, "D")
    age_id = np.searchsorted(DAY_EDGES, age, side="right")
    rating = ev["rating"].to_numpy(dtype=np.float64)
    rating_id = np.where(np.isnan(rating), 0, np.clip(np.nan_to_num(rating).round(), 1, 5)).astype(np.int64)
    state_id = np.zeros(len(ev), dtype=np.int64)
    is_ticket = kind == "ticket"
    if is_ticket.any() and "closed_at" in ev:
        closed = ev["closed_at"].to_numpy()
        closed_before = ~pd.isna(closed) & (closed < as_of.to_datetime64())
        state_id[is_ticket] = np.where(closed_before[is_ticket], 2, 1)
    items = ev["item"].to_numpy(dtype=object) if "item" in ev else np.full(len(ev), "", dtype=object)
    cache: dict[str, int] = {}
    category_id = np.array([cache.setdefault(s, _category_bucket(s)) for s in items], dtype=np.int64)

    row = ids.get_indexer(cust)
    pos = max_events - 1 - from_end
    for j, (name, values) in enumerate(zip(FIELDS, (kind_id, amount_id, gap_id, age_id, rating_id, state_id,
                                                     category_id))):
        out[row, pos, j] = OFFSETS[name] + values
    return out


def field_of_id() -> np.ndarray:
    """For each vocabulary id, the index of the field it belongs to (-1 for PAD and MASK)."""
    out = np.full(VOCAB_SIZE, -1, dtype=np.int64)
    for j, name in enumerate(FIELDS):
        out[OFFSETS[name]: OFFSETS[name] + FIELD_SIZES[name]] = j
    return out


def unlabelled_sequences(*arrays: np.ndarray | None) -> np.ndarray:
    """Every distinct event sequence of the given token arrays (e.g. training and validation rows'): no label is read."""
    seqs = np.concatenate([a for a in arrays if a is not None])
    return np.unique(seqs, axis=0) if len(seqs) < 200_000 else seqs
