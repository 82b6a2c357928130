"""Lifecycle stages from order history and the score, at one date."""
from __future__ import annotations

import pandas as pd

from mlcore.lifecycle import lifecycle_stages

AS_OF = pd.Timestamp("2026-06-01", tz="UTC")


def _orders(*rows):
    return pd.DataFrame([{"customer_id": c, "kind": "order", "occurred_at": AS_OF - pd.Timedelta(days=d)} for c, d in rows])


def test_each_stage_from_order_history_and_score():
    events = _orders(
        (1, 400), (1, 20),          # ordered 20 days ago after a 380-day gap: won back
        (2, 200), (2, 120),         # nothing for 120 days: lapsed, whatever the score
        (3, 130), (3, 60), (3, 10),  # regular, low score: active
        (4, 30),                    # first order 30 days ago: new
        (5, 50), (5, 5),            # ordering but scored 0.5: at risk
        (7, 30),                    # new but medium risk: at risk wins
    )
    ids = [1, 2, 3, 4, 5, 6, 7, 8]
    first_seen = {6: AS_OF - pd.Timedelta(days=200), 8: AS_OF - pd.Timedelta(days=10)}
    stages = lifecycle_stages(events=events, customer_ids=ids, first_seen=first_seen, as_of=AS_OF, lapse_days=90,
                              probabilities=[0.1, 0.9, 0.1, 0.1, 0.5, 0.1, 0.4, 0.1], medium=0.3)
    assert stages == ["won_back", "lapsed", "active", "new", "at_risk", "lapsed", "at_risk", "new"]


def test_orders_on_or_after_as_of_do_not_count_and_no_limit_means_nobody_lapses():
    events = _orders((1, 200), (1, -1))  # the second order is after the scoring date
    assert lifecycle_stages(events=events, customer_ids=[1], first_seen={}, as_of=AS_OF, lapse_days=90,
                            probabilities=[0.1], medium=0.3) == ["lapsed"]
    assert lifecycle_stages(events=events, customer_ids=[1], first_seen={}, as_of=AS_OF, lapse_days=0,
                            probabilities=[0.1], medium=0.3) == ["active"]


def test_no_orders_at_all():
    empty = pd.DataFrame({"customer_id": [], "kind": [], "occurred_at": pd.to_datetime([], utc=True)})
    assert lifecycle_stages(events=empty, customer_ids=[1], first_seen={1: None}, as_of=AS_OF, lapse_days=90,
                            probabilities=[0.9], medium=0.3) == ["lapsed"]
