"""Reasons in business words: strongest first, only what pushes towards churn, with the evidence quoted."""
import numpy as np
import pandas as pd

from mlcore.reasons import build_reasons, logit_delta
from mlcore.snapshot import FEATURE_NAMES, customer_snapshot

AS_OF = pd.Timestamp("2026-11-28")


def _shop():
    t = lambda d: AS_OF - pd.Timedelta(days=d)  # noqa: E731
    rows = [{"customer_id": 1, "kind": "order", "occurred_at": t(d), "amount": 50.0, "attributes": {"category": "shoes"}}
            for d in (124, 104, 84, 64)]
    rows += [
        {"customer_id": 1, "kind": "review", "occurred_at": t(12), "rating": 1, "text": "arrived broken",
         "attributes": {"product": "shoes"}},
        {"customer_id": 1, "kind": "ticket", "occurred_at": t(9), "text": "refund not processed",
         "attributes": {"ticket_id": "t1", "status": "open", "closed_at": None}},
        {"customer_id": 2, "kind": "order", "occurred_at": t(3), "amount": 20.0, "attributes": {"category": "bags"}},
    ]
    events = pd.DataFrame(rows)
    events["occurred_at"] = pd.to_datetime(events["occurred_at"]).dt.tz_localize("UTC")
    customers = pd.DataFrame({"customer_id": [1, 2], "segment": ["vip", "regular"],
                              "first_seen_at": [AS_OF - pd.Timedelta(days=200)] * 2})
    return customer_snapshot(events, customers, AS_OF)


def _contrib(snap, pushes: dict[str, float]) -> np.ndarray:
    out = np.zeros((len(snap.customer_ids), len(FEATURE_NAMES)))
    for name, value in pushes.items():
        out[0, FEATURE_NAMES.index(name)] = value
    return out


def test_reasons_quote_gap_review_and_ticket_strongest_first():
    snap = _shop()
    contributions = _contrib(snap, {"days_since_last_order": 1.5, "gap_ratio": 0.4, "min_rating_90": 0.8,
                                    "oldest_open_ticket_days": 0.6, "tenure_days": -0.9})
    reasons = build_reasons(feature_names=FEATURE_NAMES, features=snap.features.to_numpy(),
                            contributions=contributions, evidence=snap.evidence, as_of=AS_OF)
    first = reasons[0]
    assert [r["code"] for r in first] == ["no_recent_order", "bad_review", "open_ticket"]
    assert first[0]["text"] == "no order for 64 days (usually every 20)"
    assert first[0]["weight"] == 1.9
    assert first[1]["text"] == "1-star review 12 days ago: 'arrived broken'"
    assert first[2]["text"] == "open ticket for 9 days: refund not processed"
    assert first[2]["evidence"]["quote"] == "refund not processed"
    # Nothing pushes customer 2 towards churn: no factor is invented, the owner is told so.
    assert [r["code"] for r in reasons[1]] == ["baseline"]
    assert reasons[1][0]["text"] == "no single signal stands out: close to the shop's usual churn risk"


def test_a_text_segment_that_raises_risk_joins_its_topic_or_stands_alone():
    snap = _shop()
    contributions = _contrib(snap, {"days_since_last_order": 0.3})
    segments = snap.texts[0].split("\n")
    review = next(i for i, s in enumerate(segments) if " review " in s)
    order = next(i for i, s in enumerate(segments) if " order " in s)
    # Removing the review lowers P(churn) by a lot; removing the order segment lowers it a little.
    effects = logit_delta(np.array([0.8, 0.1]), [[(review, -0.3), (order, -0.05)], []])
    reasons = build_reasons(feature_names=FEATURE_NAMES, features=snap.features.to_numpy(),
                            contributions=contributions, evidence=snap.evidence, as_of=AS_OF,
                            texts=snap.texts, segment_effects=effects)[0]
    assert reasons[0]["code"] == "bad_review" and "arrived broken" in reasons[0]["text"]
    assert any(r["code"] == "recent_order" and r["text"].startswith("order 64 days ago") for r in reasons)
    assert [r["weight"] for r in reasons] == sorted((r["weight"] for r in reasons), reverse=True)


def _spend_shop():
    """Customer 1's spend fell (200 -> 50 per 90 days); customer 2's rose."""
    t = lambda d: AS_OF - pd.Timedelta(days=d)  # noqa: E731
    rows = [{"customer_id": 1, "kind": "order", "occurred_at": t(d), "amount": a} for d, a in ((170, 100.0), (120, 100.0),
                                                                                              (40, 50.0))]
    rows += [{"customer_id": 2, "kind": "order", "occurred_at": t(d), "amount": a} for d, a in ((150, 20.0), (30, 90.0))]
    events = pd.DataFrame(rows)
    events["occurred_at"] = pd.to_datetime(events["occurred_at"]).dt.tz_localize("UTC")
    customers = pd.DataFrame({"customer_id": [1, 2], "segment": "", "first_seen_at": AS_OF - pd.Timedelta(days=300)})
    return customer_snapshot(events, customers, AS_OF)


def test_a_sentence_names_a_driver_only_when_its_own_contribution_pushes_towards_churn():
    snap = _spend_shop()
    assert snap.features.loc[snap.features.index[0], "spend_trend"] < 0  # spend really fell
    kw = dict(feature_names=FEATURE_NAMES, features=snap.features.to_numpy(), evidence=snap.evidence, as_of=AS_OF)
    # The topic as a whole pushes towards churn, but the falling trend itself pulls the score down
    # (a model can learn that): "spend down" must not be said; the low 90-day spend may be.
    mixed = build_reasons(contributions=_contrib(snap, {"spend_90": 0.9, "spend_trend": -0.3}), **kw)[0]
    assert [r["code"] for r in mixed] == ["spend_down"]
    assert mixed[0]["text"].startswith("spent 50.00 in the last 90 days") and "down" not in mixed[0]["text"]
    # When the trend is what pushes, the sentence says so.
    trend = build_reasons(contributions=_contrib(snap, {"spend_trend": 0.7}), **kw)[0]
    assert trend[0]["text"].startswith("spend down 75% vs previous 90 days")
    # A topic whose named drivers all pull the score down says nothing, even when its sum is positive.
    none = build_reasons(contributions=_contrib(snap, {"spend_365": 0.8, "spend_trend": -0.1, "spend_90": -0.1}), **kw)[0]
    assert all(r["code"] != "spend_down" for r in none)


def test_lightgbm_reasons_never_name_a_driver_that_pulls_the_score_down():
    """On a trained model: every "spend down" sentence sits on a row whose spend_trend pushes towards churn,
    every "no order for" on one whose recency (or gap ratio) does."""
    from mlcore.dataset import labelled_rows, training_rows
    from mlcore.snapshot import prepare_customers, prepare_events
    from mlcore.training import train_family
    from tests.mlcore.synth import synth_frames

    events, customers = synth_frames(200, days=420, seed=2)
    as_of = pd.Timestamp("2025-11-01", tz="UTC")
    trained = train_family("lightgbm", *training_rows(events, customers, as_of=as_of, horizon_days=60))
    ev, cu = prepare_events(events), prepare_customers(customers)
    rows = labelled_rows(ev, cu, [as_of.tz_localize(None)], 60)
    snap = customer_snapshot(ev, cu, as_of.tz_localize(None), prepared=True)
    contributions = trained.model.feature_contributions(rows)
    reasons = build_reasons(feature_names=FEATURE_NAMES, features=rows.features, contributions=contributions,
                            evidence=snap.evidence, as_of=as_of.tz_localize(None))
    j = {name: FEATURE_NAMES.index(name) for name in ("spend_trend", "days_since_last_order", "gap_ratio")}
    for i, row in enumerate(reasons):
        for r in row:
            if r["text"].startswith("spend down"):
                assert contributions[i, j["spend_trend"]] > 0
            if r["text"].startswith("no order for"):
                assert max(contributions[i, j["days_since_last_order"]], contributions[i, j["gap_ratio"]]) > 0
