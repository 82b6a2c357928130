"""score_rows: calibrated probabilities, cached encoder outputs reused, occlusion only for the riskiest."""
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from mlcore.calibration import PlattCalibration
from mlcore.dataset import snapshot_rows
from mlcore.families.base import FitReport
from mlcore.scoring import band_of, score_rows, text_sha
from mlcore.snapshot import customer_snapshot
from mlcore.training import TrainedModel
from tests.mlcore.synth import synth_frames


class CountingEncoder:
    """A deterministic stand-in text family that records what it was asked to encode."""

    family: ClassVar[str] = "fake"

    def __init__(self):
        self.encoded: list[str] = []
        self.occluded = 0

    def encode(self, texts):
        self.encoded.extend(texts)
        return np.array([[len(t) / 1000.0, t.count("review")] for t in texts], dtype=np.float32)

    def predict_proba_from_embeddings(self, embeddings, features):
        z = embeddings[:, 0] * 2 + embeddings[:, 1] * 0.5 + features[:, 0] / 100.0 - 1.0
        return 1 / (1 + np.exp(-z))

    def feature_contributions_from_embeddings(self, embeddings, features):
        out = np.zeros(features.shape)
        out[:, 0] = features[:, 0] / 100.0
        return out

    def text_segment_effects(self, rows, *, max_segments=8, skip_segments=0):
        self.occluded += len(rows)
        return [[(skip_segments, -0.1)] for _ in range(len(rows))]


def _trained(model):
    return TrainedModel(family="fake", model=model, calibrator=PlattCalibration(), feature_names=(),
                        valid_metrics={}, fit_report=FitReport(train_seconds=0, n_train=0, n_valid=0))


def _snap(events, customers, as_of):
    snap = customer_snapshot(events, customers, as_of)
    return snap, snapshot_rows(snap)


def test_second_run_encodes_only_customers_whose_text_changed():
    events, customers = synth_frames(60, 300, seed=1)
    as_of = pd.Timestamp("2025-10-01", tz="UTC")
    events = events[events["occurred_at"] < as_of]  # nobody else acts on the next day
    model = CountingEncoder()
    snap, rows = _snap(events, customers, as_of)
    first = score_rows(_trained(model), rows, evidence=snap.evidence, as_of=snap.as_of, cached={})
    assert first.n_encoded == len(rows) == len(first.new_embeddings)

    # A day later, one customer ordered: only that customer's text changes.
    changed = int(rows.customer_ids[0])
    new_event = pd.DataFrame([{"customer_id": changed, "kind": "order", "occurred_at": as_of + pd.Timedelta(hours=2),
                               "amount": 10.0, "quantity": 1, "rating": np.nan, "text": "", "attributes": {}}])
    later = pd.concat([events, new_event], ignore_index=True)
    snap2, rows2 = _snap(later, customers, as_of + pd.Timedelta(days=1))
    model.encoded.clear()
    second = score_rows(_trained(model), rows2, evidence=snap2.evidence, as_of=snap2.as_of, cached=first.new_embeddings)
    assert second.n_encoded == 1 and list(second.new_embeddings) == [changed]
    assert model.encoded == [rows2.texts[0]]
    # Reused vectors score exactly as freshly encoded ones would.
    fresh = score_rows(_trained(CountingEncoder()), rows2, evidence=snap2.evidence, as_of=snap2.as_of)
    np.testing.assert_allclose(second.probabilities, fresh.probabilities)
    assert second.text_keys[0] == text_sha(rows2.texts[0])


def test_with_snapshot_text_keys_unchanged_texts_are_never_built_nor_encoded():
    events, customers = synth_frames(60, 300, seed=1)
    as_of = pd.Timestamp("2025-10-01", tz="UTC")
    events = events[events["occurred_at"] < as_of]
    model = CountingEncoder()
    snap = customer_snapshot(events, customers, as_of, known_text_keys={})
    rows = snapshot_rows(snap)
    first = score_rows(_trained(model), rows, evidence=snap.evidence, as_of=snap.as_of, cached={},
                       text_keys=snap.text_keys)
    changed = int(rows.customer_ids[3])
    later = pd.concat([events, pd.DataFrame([{"customer_id": changed, "kind": "review", "occurred_at": as_of,
                                              "rating": 1.0, "text": "broken", "attributes": {}}])], ignore_index=True)
    known = {cid: key for cid, (key, _) in first.new_embeddings.items()}
    snap2 = customer_snapshot(later, customers, as_of + pd.Timedelta(days=1), known_text_keys=known)
    rows2 = snapshot_rows(snap2)
    assert sum(t is not None for t in rows2.texts) == 1
    model.encoded.clear()
    second = score_rows(_trained(model), rows2, evidence=snap2.evidence, as_of=snap2.as_of,
                        cached=first.new_embeddings, text_keys=snap2.text_keys)
    assert second.n_encoded == 1 and list(second.new_embeddings) == [changed] and "broken" in model.encoded[0]
    full = customer_snapshot(later, customers, as_of + pd.Timedelta(days=1))
    fresh = score_rows(_trained(CountingEncoder()), snapshot_rows(full), evidence=full.evidence, as_of=full.as_of)
    np.testing.assert_allclose(second.probabilities, fresh.probabilities)
    # A cached vector that does not apply needs its text: a caller that skipped it gets told.
    with pytest.raises(ValueError, match="no text for customers"):
        score_rows(_trained(model), rows2, evidence=snap2.evidence, as_of=snap2.as_of, cached={},
                   text_keys=snap2.text_keys)


def test_occlusion_runs_only_for_rows_at_or_above_the_threshold():
    events, customers = synth_frames(40, 300, seed=2)
    snap, rows = _snap(events, customers, pd.Timestamp("2025-10-01", tz="UTC"))
    model = CountingEncoder()
    scored = score_rows(_trained(model), rows, evidence=snap.evidence, as_of=snap.as_of, occlusion_threshold=0.5)
    assert model.occluded == int((scored.probabilities >= 0.5).sum())
    assert all(len(r) <= 5 for r in scored.reasons)


def test_bands_follow_the_thresholds():
    assert [band_of(p, high=0.6, medium=0.3) for p in (0.6, 0.59, 0.3, 0.29)] == ["high", "medium", "medium", "low"]
