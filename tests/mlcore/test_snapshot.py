"""Snapshots read only the past, texts stay stable without new events, labels and cutoffs are time-safe."""
import numpy as np
import pandas as pd
import pytest

from mlcore.dataset import labelled_rows, outcome_overrides, plan_cutoffs
from mlcore.errors import NotEnoughData
from mlcore.snapshot import FEATURE_DOCS, FEATURE_NAMES, customer_snapshot, prepare_customers, prepare_events
from mlcore.snapshot import snapshot as snapshot_rows
from tests.mlcore.synth import synth_frames

AS_OF = pd.Timestamp("2025-09-01", tz="UTC")


@pytest.fixture(scope="module")
def shop():
    return synth_frames(120, days=420, seed=3)


def test_events_after_as_of_change_neither_features_nor_text(shop):
    events, customers = shop
    before = customer_snapshot(events, customers, AS_OF)
    future = events[events["customer_id"].isin(before.customer_ids[:40])].copy()
    future["occurred_at"] = AS_OF + pd.Timedelta(hours=1)  # also exactly-at-as_of events are the future
    future.loc[future.index[:5], "occurred_at"] = AS_OF
    future["text"] = "terrible, never again"
    after = customer_snapshot(pd.concat([events, future], ignore_index=True), customers, AS_OF)
    assert list(after.customer_ids) == list(before.customer_ids)
    pd.testing.assert_frame_equal(after.features, before.features)
    assert after.texts == before.texts


def test_ticket_closed_after_as_of_counts_as_open(shop):
    events, customers = shop
    ticket = pd.DataFrame([{"customer_id": 1, "kind": "ticket", "occurred_at": AS_OF - pd.Timedelta(days=9),
                            "text": "refund not processed",
                            "attributes": {"status": "closed", "closed_at": (AS_OF + pd.Timedelta(days=3)).isoformat()}}])
    snap = customer_snapshot(pd.concat([events[events.customer_id == 1], ticket], ignore_index=True), customers, AS_OF)
    assert snap.features.loc[1, "tickets_open"] == 1
    assert round(float(snap.features.loc[1, "oldest_open_ticket_days"])) == 9
    assert "ticket open: refund not processed" in snap.texts[0]
    later = customer_snapshot(pd.concat([events[events.customer_id == 1], ticket], ignore_index=True), customers,
                     AS_OF + pd.Timedelta(days=5))
    assert later.features.loc[1, "tickets_open"] == 0


def test_text_uses_absolute_dates_so_a_quiet_day_changes_nothing(shop):
    events, customers = shop
    events = events[events["occurred_at"] < AS_OF - pd.Timedelta(days=3)]
    today, tomorrow = customer_snapshot(events, customers, AS_OF), customer_snapshot(events, customers, AS_OF + pd.Timedelta(days=1))
    assert today.texts == tomorrow.texts
    # ...while recency moves on in the numeric features
    assert (tomorrow.features["days_since_last_order"] - today.features["days_since_last_order"]).round(3).eq(1).all()
    first = today.texts[0].split("\n")
    assert first[0].startswith("customer since 20") and first[1].startswith("history: ")
    assert all(len(t) <= 640 for t in today.texts)


def _keys(snap) -> dict[int, str]:
    return dict(zip(snap.customer_ids.tolist(), snap.text_keys))


def test_text_keys_stay_on_a_quiet_day_and_change_with_anything_the_text_shows(shop):
    events, customers = shop
    customers = customers.assign(segment_since=AS_OF - pd.Timedelta(days=30))  # segments known at these cutoffs
    events = events[events["occurred_at"] < AS_OF - pd.Timedelta(days=3)].reset_index(drop=True)
    today = customer_snapshot(events, customers, AS_OF, known_text_keys={})
    assert len(set(today.text_keys)) == len(today.customer_ids)  # one key per distinct text
    tomorrow = customer_snapshot(events, customers, AS_OF + pd.Timedelta(days=1), known_text_keys={})
    assert tomorrow.text_keys == today.text_keys

    a, b, c, d = (int(x) for x in today.customer_ids[:4])
    new_order = pd.DataFrame([{"customer_id": a, "kind": "order", "occurred_at": AS_OF - pd.Timedelta(hours=5),
                               "amount": 12.0, "attributes": {}}])
    edited = events.copy()
    edited.loc[edited.index[edited["customer_id"] == b][0], "text"] = "changed afterwards"
    ticket = pd.DataFrame([{"customer_id": c, "kind": "ticket", "occurred_at": AS_OF - pd.Timedelta(days=10), "text": "late",
                            "attributes": {"status": "closed", "closed_at": (AS_OF + pd.Timedelta(hours=12)).isoformat()}}])
    segments = customers.copy()
    segments.loc[segments["customer_id"] == d, "segment"] = "lapsed vip"
    base = customer_snapshot(pd.concat([edited, ticket], ignore_index=True), segments, AS_OF, known_text_keys={})
    changed = customer_snapshot(pd.concat([edited, ticket, new_order], ignore_index=True), segments,
                                AS_OF + pd.Timedelta(days=1), known_text_keys={})  # the ticket is closed by then
    before, after, original = _keys(base), _keys(changed), _keys(today)
    assert {cid for cid in after if after[cid] != before[cid]} == {a, c}  # new order, ticket now closed
    assert {cid for cid in before if before[cid] != original[cid]} == {b, c, d}  # edited text, new ticket, segment


def test_known_keys_skip_building_unchanged_texts(shop):
    events, customers = shop
    full = customer_snapshot(events, customers, AS_OF, known_text_keys={})
    known = _keys(full)
    stale = [int(x) for x in full.customer_ids[[0, 5, 7]]]
    for cid in stale:
        known[cid] = "t1:0000000000000000"  # an older text
    del known[int(full.customer_ids[9])]  # never encoded
    partial = customer_snapshot(events, customers, AS_OF, known_text_keys=known)
    built = [i for i, t in enumerate(partial.texts) if t is not None]
    assert built == [0, 5, 7, 9]
    assert [partial.texts[i] for i in built] == [full.texts[i] for i in built]
    assert partial.text_keys == full.text_keys
    pd.testing.assert_frame_equal(partial.features, full.features)


def test_transactions_only_shop_gets_features_and_texts():
    events, customers = synth_frames(60, days=300, seed=1, transactions_only=True)
    events = events[["customer_id", "kind", "occurred_at", "amount"]]
    snap = customer_snapshot(events, customers.drop(columns=["segment"]), AS_OF)
    assert snap.features.shape[1] == len(FEATURE_NAMES)
    assert np.isfinite(snap.features.to_numpy()).all()
    assert snap.features["tickets_open"].eq(0).all() and snap.features["mean_rating_365"].eq(4).all()


def test_usual_gap_and_recency_match_hand_computation():
    t0 = pd.Timestamp("2025-01-01", tz="UTC")
    events = pd.DataFrame([{"customer_id": 7, "kind": "order", "occurred_at": t0 + pd.Timedelta(days=d), "amount": 10.0}
                           for d in (0, 20, 40, 60)])
    snap = customer_snapshot(events, pd.DataFrame({"customer_id": [7], "segment": ["vip"], "first_seen_at": [t0]}),
                    t0 + pd.Timedelta(days=124))
    f = snap.features.loc[7]
    # orders 124, 104, 84 and 64 days before as_of: two of them in the last 90 days
    assert f["usual_gap_days"] == 20 and f["days_since_last_order"] == 64 and f["orders_90"] == 2
    assert f["orders_365"] == 4 and f["spend_90"] == 20
    assert snap.texts[0].split("\n")[2] == "2025-03-02 order 10.00"


def test_cutoffs_keep_every_label_window_before_as_of():
    plan = plan_cutoffs(data_start="2025-01-01", as_of="2026-01-01", horizon_days=90)
    assert plan.valid_cutoff + pd.Timedelta(days=90) <= pd.Timestamp("2026-01-01")
    assert all(c < plan.valid_cutoff for c in plan.train_cutoffs)
    # A horizon between the last training cutoff and validation: their label windows never overlap.
    assert max(plan.train_cutoffs) + pd.Timedelta(days=90) == plan.valid_cutoff
    with pytest.raises(NotEnoughData, match="need at least 240 days of events before it"):
        plan_cutoffs(data_start="2025-10-01", as_of="2026-01-01", horizon_days=90)


def test_recorded_outcomes_override_behaviour_labels(shop):
    events, customers = shop
    ev, cu = prepare_events(events), prepare_customers(customers)
    cutoff = pd.Timestamp("2025-06-01")
    rows = labelled_rows(ev, cu, [cutoff], 90)
    stayer = int(rows.customer_ids[np.flatnonzero(rows.labels == 0)[0]])
    churner = int(rows.customer_ids[np.flatnonzero(rows.labels == 1)[0]])
    iv = pd.DataFrame([
        {"customer_id": stayer, "created_at": cutoff - pd.Timedelta(days=3), "outcome": "churned",
         "outcome_at": (cutoff + pd.Timedelta(days=10)).tz_localize("UTC")},
        {"customer_id": churner, "created_at": cutoff - pd.Timedelta(days=3), "outcome": "retained",
         "outcome_at": (cutoff + pd.Timedelta(days=10)).tz_localize("UTC")},
    ])
    over = labelled_rows(ev, cu, [cutoff], 90, interventions=iv)
    pos = {int(c): i for i, c in enumerate(over.customer_ids)}
    assert over.labels[pos[stayer]] == 1 and over.labels[pos[churner]] == 0
    treated = over.features[:, FEATURE_NAMES.index("treated")]
    assert treated[pos[stayer]] == 1 and treated.sum() == 2
    mask, _ = outcome_overrides(iv.assign(outcome_at=iv["outcome_at"] + pd.Timedelta(days=200)), over.customer_ids, cutoff, 90)
    assert not mask.any()  # an outcome outside the label window says nothing about it


def test_contract_snapshot_rows_ignore_the_future_too(shop):
    """The Rows the families train on: features and texts identical with or without events after as_of."""
    events, customers = shop
    before = snapshot_rows(events, customers, AS_OF)
    future = events.copy()
    future["occurred_at"] = AS_OF + pd.Timedelta(days=2)
    after = snapshot_rows(pd.concat([events, future], ignore_index=True), customers, AS_OF)
    assert before.feature_names == FEATURE_NAMES and before.labels is None
    np.testing.assert_array_equal(after.customer_ids, before.customer_ids)
    np.testing.assert_array_equal(after.features, before.features)
    assert after.texts == before.texts
    assert all("days ago" not in t for t in before.texts)


def test_every_feature_is_documented_in_plain_words():
    assert list(FEATURE_DOCS) == list(FEATURE_NAMES)
    assert all(len(doc.split()) >= 2 for doc in FEATURE_DOCS.values())


def test_without_texts_the_snapshot_is_the_same_but_builds_none(shop):
    """A family that reads no text (lightgbm, the behaviour families) scores from a snapshot without texts."""
    events, customers = shop
    full = customer_snapshot(events, customers, AS_OF)
    bare = customer_snapshot(events, customers, AS_OF, texts=False)
    assert bare.texts == [None] * len(full.texts) and all(full.texts)
    pd.testing.assert_frame_equal(bare.features, full.features)
    pd.testing.assert_frame_equal(bare.evidence, full.evidence)
    assert list(bare.customer_ids) == list(full.customer_ids)
