"""Treatment as data: alerts and actions become columns at the right cutoffs, never from the future;
scoring sets them to "no action"; evaluation weights keep treated rows out of the figures."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlcore.backtest import run_backtest
from mlcore.dataset import evaluation_summary, labelled_rows, training_rows, untreated_weights
from mlcore.errors import MlError
from mlcore.metrics import curves, evaluate
from mlcore.reasons import build_reasons
from mlcore.snapshot import (
    ACTION_TYPES, FEATURE_DOCS, FEATURE_NAMES, NO_HISTORY_DAYS, TREATMENT_FEATURES, as_if_untreated,
    customer_snapshot, prepare_customers, prepare_events, rows_for_features,
)
from mlcore.training import train_family
from tests.mlcore.synth import synth_frames

C1, C2 = pd.Timestamp("2025-06-01"), pd.Timestamp("2025-07-01")
AS_OF = pd.Timestamp("2025-11-01", tz="UTC")


def utc(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.tz_localize("UTC")


@pytest.fixture(scope="module")
def shop():
    events, customers = synth_frames(200, days=420, seed=2)
    return prepare_events(events), prepare_customers(customers)


def _col(rows, name, cid, cutoff):
    i = np.flatnonzero((rows.customer_ids == cid) & (rows.as_of == np.datetime64(cutoff, "ns")))
    assert len(i) == 1, (cid, cutoff)
    return float(rows.features[i[0], FEATURE_NAMES.index(name)])


def _label(rows, cid, cutoff):
    i = np.flatnonzero((rows.customer_ids == cid) & (rows.as_of == np.datetime64(cutoff, "ns")))[0]
    return int(rows.labels[i])


def test_treatment_columns_are_documented_and_reset_by_scoring():
    assert set(TREATMENT_FEATURES) <= set(FEATURE_NAMES) and list(FEATURE_DOCS) == list(FEATURE_NAMES)
    assert {f"action_{a}" for a in ACTION_TYPES} <= set(TREATMENT_FEATURES)
    assert "flagged" not in TREATMENT_FEATURES and "days_since_flagged" not in TREATMENT_FEATURES


def test_rows_carry_alerts_and_actions_from_before_each_cutoff_and_outcomes_in_its_window(shop):
    ev, cu = shop
    base = labelled_rows(ev, cu, [C1, C2], 90)
    ids = [int(c) for c in np.unique(base.customer_ids[base.as_of == np.datetime64(C1, "ns")])[:4]]
    a, b, c, d = ids
    alerts = pd.DataFrame([
        {"customer_id": a, "alerted_at": utc(C1 + pd.Timedelta(days=10)), "status": "sent"},      # between C1 and C2
        {"customer_id": b, "alerted_at": utc(C1 - pd.Timedelta(days=5)), "status": "held_out"},  # before both
        {"customer_id": c, "alerted_at": utc(C1 - pd.Timedelta(days=2)), "status": "failed"},    # picked, not told
    ])
    interventions = pd.DataFrame([
        {"customer_id": a, "created_at": utc(C1 + pd.Timedelta(days=12)), "action": "coupon",
         "outcome": "churned", "outcome_at": utc(C2 + pd.Timedelta(days=20))},
        {"customer_id": d, "created_at": utc(C1 - pd.Timedelta(days=40)), "action": "call",
         "outcome": "retained", "outcome_at": utc(C1 + pd.Timedelta(days=5))},
        {"customer_id": d, "created_at": utc(C1 - pd.Timedelta(days=1)), "action": "carrier pigeon",
         "outcome": "", "outcome_at": None},
    ])
    rows = labelled_rows(ev, cu, [C1, C2], 90, interventions=interventions, alerts=alerts)
    # a: nothing at C1; at C2 told 20 days ago and given a coupon 18 days ago.
    assert [_col(rows, n, a, C1) for n in ("flagged", "alerted", "treated", "action_coupon")] == [0, 0, 0, 0]
    assert _col(rows, "days_since_flagged", a, C1) == NO_HISTORY_DAYS
    assert [_col(rows, n, a, C2) for n in ("flagged", "alerted", "held_out", "treated", "action_coupon")] == [1, 1, 0, 1, 1]
    assert _col(rows, "days_since_flagged", a, C2) == 20 and _col(rows, "days_since_treatment", a, C2) == 18
    # b: held out before C1: flagged, nobody told.
    assert [_col(rows, n, b, C1) for n in ("flagged", "alerted", "held_out")] == [1, 0, 1]
    assert _col(rows, "days_since_flagged", b, C1) == 5
    # c: a failed alert flags but neither tells nor holds out.
    assert [_col(rows, n, c, C1) for n in ("flagged", "alerted", "held_out")] == [1, 0, 0]
    # d: a call, then an unknown action counted as "other"; the latest sets days since treatment.
    assert [_col(rows, n, d, C1) for n in ("treated", "action_call", "action_other", "action_email")] == [1, 1, 1, 0]
    assert _col(rows, "days_since_treatment", d, C1) == 1
    # Recorded outcomes are labels in every window they fall into (a's: both), and only there (d's: C1).
    assert _label(rows, d, C1) == 0 and _label(rows, a, C1) == 1 and _label(rows, a, C2) == 1
    assert _label(rows, d, C2) == _label(base, d, C2)
    # The columns describe what happened; everything else is the same as without treatment data.
    other = [j for j, n in enumerate(FEATURE_NAMES) if n not in TREATMENT_FEATURES + ("flagged", "days_since_flagged")]
    np.testing.assert_array_equal(rows.features[:, other], base.features[:, other])


@pytest.mark.slow
def test_alerts_and_actions_from_the_cutoff_on_change_no_training_row(shop):
    """The leakage test for treatment: what happens at or after as_of is invisible to the model for as_of."""
    ev, cu = shop
    events = ev.assign(occurred_at=ev["occurred_at"].dt.tz_localize("UTC"))
    ids = np.unique(ev["customer_id"])[:60]
    early = pd.Timestamp("2025-05-01", tz="UTC")
    alerts = pd.DataFrame({"customer_id": ids[:30], "alerted_at": early, "status": ["sent", "held_out"] * 15})
    interventions = pd.DataFrame({"customer_id": ids[:10], "created_at": early + pd.Timedelta(days=1),
                                  "action": "call", "outcome": "", "outcome_at": None})
    train, valid = training_rows(events, cu, as_of=AS_OF, horizon_days=60, interventions=interventions, alerts=alerts)
    late_alerts = pd.DataFrame({"customer_id": ids, "alerted_at": AS_OF, "status": "sent"})
    late = pd.DataFrame({"customer_id": ids, "created_at": AS_OF + pd.Timedelta(hours=1), "action": "coupon",
                         "outcome": "churned", "outcome_at": AS_OF + pd.Timedelta(days=2)})
    train2, valid2 = training_rows(events, cu, as_of=AS_OF, horizon_days=60,
                                   interventions=pd.concat([interventions, late], ignore_index=True),
                                   alerts=pd.concat([alerts, late_alerts], ignore_index=True))
    assert _col(train, "flagged", int(ids[0]), max(train.as_of)) == 1  # the early ones do count
    for x, y in ((train, train2), (valid, valid2)):
        np.testing.assert_array_equal(x.features, y.features)
        np.testing.assert_array_equal(x.labels, y.labels)
    np.testing.assert_array_equal(valid.sample_weight, valid2.sample_weight)
    # Training rows are weighted as if untreated too, from alerts and actions before as_of only.
    np.testing.assert_array_equal(train.sample_weight, train2.sample_weight)
    assert (train.sample_weight > 1).any()  # held-out customers stand for the alerted ones
    # And at a single cutoff: an alert or action exactly at the cutoff is the future.
    at_cutoff = customer_snapshot(ev, cu, C1, prepared=True, alerts=late_alerts.assign(alerted_at=utc(C1)),
                                  interventions=late.assign(created_at=utc(C1)))
    plain = customer_snapshot(ev, cu, C1, prepared=True)
    pd.testing.assert_frame_equal(at_cutoff.features, plain.features)


def test_scoring_sets_treatment_to_no_action_and_keeps_everything_else(shop):
    ev, cu = shop
    cid = int(np.unique(ev["customer_id"])[0])
    rows = labelled_rows(ev, cu, [C2], 90, alerts=pd.DataFrame(
        [{"customer_id": cid, "alerted_at": utc(C1), "status": "sent"}]), interventions=pd.DataFrame(
        [{"customer_id": cid, "created_at": utc(C1), "action": "email", "outcome": "", "outcome_at": None}]))
    scored = as_if_untreated(rows)
    name = list(FEATURE_NAMES).index
    i = int(np.flatnonzero(rows.customer_ids == cid)[0])
    assert rows.features[i, name("alerted")] == 1 and rows.features[i, name("action_email")] == 1
    assert scored.features[:, [name(n) for n in ("alerted", "treated", "action_email")]].max() == 0
    assert (scored.features[:, name("days_since_treatment")] == NO_HISTORY_DAYS).all()
    # Flagged and nobody told: what a held-out customer is; the policy's past judgement stays.
    assert scored.features[i, name("held_out")] == 1 and scored.features[i, name("flagged")] == 1
    assert scored.features[i, name("days_since_flagged")] == 30
    keep = [name(n) for n in FEATURE_NAMES if n not in TREATMENT_FEATURES]
    np.testing.assert_array_equal(scored.features[:, keep], rows.features[:, keep])
    assert rows.features[i, name("treated")] == 1  # the input rows are not modified


def test_a_model_saved_with_an_older_feature_list_reads_just_its_columns(shop):
    ev, cu = shop
    rows = labelled_rows(ev, cu, [C1], 90)
    old = FEATURE_NAMES[:FEATURE_NAMES.index("tenure_days") + 1] + ("treated", "days_since_treatment")
    projected = rows_for_features(rows, old)  # the 35 columns before treatment became data
    assert projected.feature_names == old and projected.features.shape[1] == 35
    np.testing.assert_array_equal(projected.features, rows.features[:, [FEATURE_NAMES.index(n) for n in old]])
    with pytest.raises(MlError, match="needs features this code does not compute: loyalty_points; retrain"):
        rows_for_features(rows, old + ("loyalty_points",))


def test_reasons_make_no_claim_about_treatment_and_quote_the_last_action():
    as_of = pd.Timestamp("2026-03-01")
    events = pd.DataFrame([{"customer_id": 1, "kind": "order", "occurred_at": as_of - pd.Timedelta(days=d),
                            "amount": 40.0} for d in (150, 120, 90)])
    events["occurred_at"] = events["occurred_at"].dt.tz_localize("UTC")
    customers = pd.DataFrame({"customer_id": [1], "segment": ["vip"], "first_seen_at": [as_of - pd.Timedelta(days=200)]})
    snap = customer_snapshot(events, customers, utc(as_of), interventions=pd.DataFrame(
        [{"customer_id": 1, "created_at": utc(as_of - pd.Timedelta(days=12)), "action": "call"}]),
        alerts=pd.DataFrame([{"customer_id": 1, "alerted_at": utc(as_of - pd.Timedelta(days=14)), "status": "sent"}]))
    rows = as_if_untreated(__import__("mlcore.dataset", fromlist=["snapshot_rows"]).snapshot_rows(snap))
    contributions = np.zeros((1, len(FEATURE_NAMES)))
    # Even if a model put weight on the (reset) treatment columns, no reason is built from them.
    for n in ("alerted", "treated", "days_since_treatment", "action_call"):
        contributions[0, FEATURE_NAMES.index(n)] = 2.0
    contributions[0, FEATURE_NAMES.index("days_since_last_order")] = 1.0
    contributions[0, FEATURE_NAMES.index("flagged")] = 0.5
    reasons = build_reasons(feature_names=FEATURE_NAMES, features=rows.features, contributions=contributions,
                            evidence=snap.evidence, as_of=as_of)[0]
    assert [r["code"] for r in reasons] == ["no_recent_order", "flagged", "past_action"]
    assert reasons[1]["text"] == "already flagged as at risk 14 days ago"
    assert reasons[2] == {"code": "past_action", "weight": 0.0,
                          "text": "call logged 12 days ago; this score is the risk if nothing is done",
                          "evidence": {"action": "call", "days_ago": 12, "date": "2026-02-17"}}
    assert not any("contacted" in r["text"] for r in reasons)


def test_untreated_weights():
    ids = np.arange(1, 21)
    cutoff = pd.Timestamp("2025-06-01")
    in_window = utc(cutoff + pd.Timedelta(days=5))
    assert (untreated_weights(ids, cutoff, 30) == 1).all()
    alerts = pd.DataFrame([
        *({"customer_id": c, "alerted_at": in_window, "status": "sent"} for c in (1, 2, 3)),
        *({"customer_id": c, "alerted_at": in_window, "status": "held_out"} for c in (4, 5)),
        {"customer_id": 6, "alerted_at": utc(cutoff - pd.Timedelta(days=20)), "status": "digested"},  # horizon before
        {"customer_id": 7, "alerted_at": utc(cutoff - pd.Timedelta(days=31)), "status": "sent"},  # too long ago
        {"customer_id": 8, "alerted_at": utc(cutoff + pd.Timedelta(days=30)), "status": "sent"},  # after the window
    ])
    interventions = pd.DataFrame([
        {"customer_id": 5, "created_at": in_window},   # held out but treated by hand anyway
        {"customer_id": 9, "created_at": in_window},   # acted on without any alert
    ])
    w = untreated_weights(ids, cutoff, 30, alerts=alerts, interventions=interventions)
    share = 2 / 6  # held out among the alert-eligible customers 1-6
    expected = np.ones(20)
    expected[[0, 1, 2, 4, 5, 8]] = 0.0
    expected[3] = 1 / share
    np.testing.assert_allclose(w, expected)
    summary = evaluation_summary(w)
    assert summary["left_out"] == 6 and summary["held_out_weighted"] == 1 and "untreated rows only" in summary["text"]
    # Without a control group nothing untreated stands for the alerted customers: plain figures, said so.
    told_only = alerts[alerts["status"] != "held_out"]
    assert (untreated_weights(ids, cutoff, 30, alerts=told_only) == 1).all()
    assert evaluation_summary(np.ones(3))["text"].startswith("all rows count once")
    # With the hash-stable hold-out the weights estimate the population: 3 held out of 30 eligible.
    alerts30 = pd.DataFrame({"customer_id": np.arange(1, 31), "alerted_at": in_window,
                             "status": ["held_out"] * 3 + ["sent"] * 27})
    w30 = untreated_weights(np.arange(1, 101), cutoff, 30, alerts=alerts30)
    assert w30.sum() == pytest.approx(100) and set(np.round(w30, 6)) == {0.0, 1.0, 10.0}


def test_weights_of_one_change_no_metric():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 500), 0, 1)
    assert evaluate(y, p, np.ones(500)) == evaluate(y, p)
    assert curves(y, p, np.ones(500)) == curves(y, p)
    # Weight 0 is leaving the row out; weight 2 counts it twice.
    w = np.where(np.arange(500) < 100, 0.0, 1.0)
    assert evaluate(y, p, w) == evaluate(y[100:], p[100:])
    twice = np.r_[np.arange(500), np.arange(250)]
    w2 = np.r_[np.full(250, 2.0), np.ones(250)]
    got, want = evaluate(y, p, w2), evaluate(y[twice], p[twice])
    for k in ("roc_auc", "pr_auc", "brier", "ece"):
        assert got[k] == pytest.approx(want[k], abs=1e-9)
    with pytest.raises(ValueError, match="weights must be one finite, non-negative number per row"):
        evaluate(y, p, -np.ones(500))


@pytest.mark.slow
def test_backtest_without_alerts_in_reach_is_unchanged(shop):
    """Alerts and actions after the test window touch neither training, scores nor weights."""
    ev, cu = shop
    events = ev.assign(occurred_at=ev["occurred_at"].dt.tz_localize("UTC"))
    plain = run_backtest(events, cu, as_of=AS_OF, horizon_days=60, families=["logreg"])
    ids = np.unique(ev["customer_id"])[:50]
    after = AS_OF + pd.Timedelta(days=61)
    later = run_backtest(events, cu, as_of=AS_OF, horizon_days=60, families=["logreg"],
                         alerts=pd.DataFrame({"customer_id": ids, "alerted_at": after, "status": "sent"}),
                         interventions=pd.DataFrame({"customer_id": ids, "created_at": after, "action": "call",
                                                     "outcome": "", "outcome_at": None}))
    assert plain["evaluation"]["left_out"] == 0 and plain["evaluation"]["weight_sum"] == plain["n_customers"]
    assert later["families"]["logreg"] == {**plain["families"]["logreg"],
                                           "train_seconds": later["families"]["logreg"]["train_seconds"],
                                           "total_seconds": later["families"]["logreg"]["total_seconds"]}


@pytest.mark.slow
def test_backtest_scores_as_if_untreated_and_measures_untreated_rows(shop):
    ev, cu = shop
    events = ev.assign(occurred_at=ev["occurred_at"].dt.tz_localize("UTC"))
    as_of_naive = AS_OF.tz_localize(None)
    ids = np.unique(ev.loc[ev["occurred_at"] < as_of_naive, "customer_id"])
    told, held = ids[:40], ids[40:50]
    alerts = pd.DataFrame({"customer_id": np.r_[told, held], "alerted_at": AS_OF + pd.Timedelta(days=3),
                           "status": ["sent"] * 40 + ["held_out"] * 10})
    # The told customers all stay (the action "worked"): counted, they would distort the figures.
    interventions = pd.DataFrame({"customer_id": told, "created_at": AS_OF + pd.Timedelta(days=4),
                                  "action": "call", "outcome": "retained", "outcome_at": AS_OF + pd.Timedelta(days=30)})
    results = run_backtest(events, cu, as_of=AS_OF, horizon_days=60, families=["logreg"], alerts=alerts,
                           interventions=interventions)
    assert results["evaluation"]["left_out"] == 40 and results["evaluation"]["held_out_weighted"] == 10
    assert results["evaluation"]["weight_sum"] == pytest.approx(results["n_customers"])
    # Recompute by hand: same model (logreg is deterministic), untreated scores, weights 0 / 5 / 1.
    train, valid = training_rows(events, cu, as_of=AS_OF, horizon_days=60, interventions=interventions, alerts=alerts)
    trained = train_family("logreg", train, valid)
    test = labelled_rows(ev, cu, [as_of_naive], 60, interventions=interventions, alerts=alerts)
    p = trained.predict_proba(as_if_untreated(test))
    w = np.where(np.isin(test.customer_ids, told), 0.0, np.where(np.isin(test.customer_ids, held), 5.0, 1.0))
    assert results["families"]["logreg"]["roc_auc"] == pytest.approx(roc_auc_score(test.labels, p, sample_weight=w),
                                                                     abs=1e-6)
    assert "untreated rows only: 40 alerted or treated rows left out" in results["evaluation"]["text"]


@pytest.mark.slow
def test_untreated_weights_recover_the_no_action_figures_that_treated_rows_distort(shop):
    """Alert the riskiest 40%, hold out 10% of them, let the action keep 60% of the told churners:
    figures over all rows collapse, the untreated weights land near the figures without any action."""
    from mlcore.control_group import control_group_member

    ev, cu = shop
    events = ev.assign(occurred_at=ev["occurred_at"].dt.tz_localize("UTC"))
    cutoff = AS_OF.tz_localize(None)
    train, valid = training_rows(events, cu, as_of=AS_OF, horizon_days=60)
    model = train_family("logreg", train, valid)
    test = labelled_rows(ev, cu, [cutoff], 60)
    p_truth = model.predict_proba(test)
    flagged = p_truth >= np.quantile(p_truth, 0.6)
    held = flagged & np.array([control_group_member(str(c), share=0.10, salt="t") for c in test.customer_ids])
    told = flagged & ~held
    saved = told & (test.labels == 1) & (np.random.default_rng(0).random(len(test)) < 0.6)
    alerts = pd.DataFrame({"customer_id": test.customer_ids[flagged], "alerted_at": AS_OF + pd.Timedelta(days=1),
                           "status": np.where(held[flagged], "held_out", "sent")})
    interventions = pd.DataFrame({"customer_id": test.customer_ids[told], "created_at": AS_OF + pd.Timedelta(days=2),
                                  "action": "call", "outcome": np.where(saved[told], "retained", "still_working"),
                                  "outcome_at": AS_OF + pd.Timedelta(days=20)})
    loop = labelled_rows(ev, cu, [cutoff], 60, interventions=interventions, alerts=alerts, evaluation_weights=True)
    p = model.predict_proba(as_if_untreated(loop))
    truth, everyone = evaluate(test.labels, p_truth), evaluate(loop.labels, p)
    untreated = evaluate(loop.labels, p, loop.sample_weight)
    assert held.sum() >= 5 and saved.sum() >= 20
    for k in ("roc_auc", "pr_auc", "brier"):
        assert abs(untreated[k] - truth[k]) < 0.05 < abs(everyone[k] - truth[k]), k
