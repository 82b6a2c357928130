"""Scoring a behaviour family runs each event encoder once per row: probabilities and reasons share the pass.

Scoring needs both P(churn) and the per-feature contributions. Asked for separately, the behaviour
BERT encoded every customer twice and the stacked family ran its four encoders twice.
"""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from mlcore.calibration import PlattCalibration
from mlcore.dataset import training_rows
from mlcore.families.base import FitReport, predict_with_contributions
from mlcore.families.behaviour import EventEncoder
from mlcore.families.gbm import LightgbmFamily
from mlcore.families.stacked import StackedConfig, StackedFamily
from mlcore.scoring import score_rows
from mlcore.training import TrainedModel
from tests.mlcore.families.behaviour_models import TINY, untrained_behaviour
from tests.mlcore.synth import synth_frames

AS_OF = pd.Timestamp("2025-11-01", tz="UTC")


@pytest.fixture(scope="module")
def rows():
    train, valid = training_rows(*synth_frames(120, days=420, seed=5), as_of=AS_OF, horizon_days=60)
    return train, valid


@pytest.fixture
def encoder_passes(monkeypatch):
    """Rows pushed through any EventEncoder, counted."""
    seen = {"rows": 0}
    forward = EventEncoder.forward

    def counting(self, tokens):
        seen["rows"] += int(tokens.shape[0])
        return forward(self, tokens)

    monkeypatch.setattr(EventEncoder, "forward", counting)
    return seen


def _behaviour(feature_names, seed):
    """An untrained behaviour BERT (weights from a seed): the count of passes does not depend on training."""
    return untrained_behaviour(feature_names, seed=seed, num_threads=1)


def _trained(model, names):
    return TrainedModel(family=model.family, model=model, calibrator=PlattCalibration(), feature_names=names,
                        valid_metrics={}, fit_report=FitReport(train_seconds=0, n_train=0, n_valid=0))


def _score(model, valid):
    evidence = pd.DataFrame(index=pd.Index(valid.customer_ids, name="customer_id"))
    return score_rows(_trained(model, valid.feature_names), valid, evidence=evidence, as_of=AS_OF)


def test_behaviour_bert_scores_each_customer_with_one_encoder_pass(rows, encoder_passes):
    _, valid = rows
    family = _behaviour(valid.feature_names, seed=0)
    p, contributions = predict_with_contributions(family, valid)
    assert encoder_passes["rows"] == len(valid)
    # The same answers as the two separate calls.
    np.testing.assert_allclose(p, family.predict_proba(valid), atol=1e-6)
    np.testing.assert_allclose(contributions, family.feature_contributions(valid), atol=1e-6)
    encoder_passes["rows"] = 0
    scored = _score(family, valid)
    assert encoder_passes["rows"] == len(valid) and len(scored.reasons) == len(valid)


def test_stacked_family_scores_with_one_pass_of_each_encoder(rows, encoder_passes):
    train, valid = rows
    stacked = StackedFamily(StackedConfig(folds=3, embedding_dims=4, events=TINY))
    stacked.feature_names = tuple(valid.feature_names)
    stacked.fold_models = [_behaviour(valid.feature_names, seed=k) for k in range(3)]
    torch.manual_seed(9)
    stacked.encoder = EventEncoder(1, 16, 2, 16).eval()
    stacked.pca_mean = np.zeros(16, np.float32)
    stacked.pca_components = np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)
    stacked.gbm = LightgbmFamily()
    stacked.gbm.fit(stacked._stacked_rows(train), stacked._stacked_rows(valid))
    encoder_passes["rows"] = 0

    scored = _score(stacked, valid)
    assert encoder_passes["rows"] == 4 * len(valid)  # three fold models and the pretrained encoder, once each
    p, contributions = predict_with_contributions(stacked, valid)
    np.testing.assert_allclose(scored.probabilities, p)  # identity calibration
    assert contributions.shape == (len(valid), len(valid.feature_names))
    np.testing.assert_allclose(contributions, stacked.feature_contributions(valid))


def test_a_family_without_the_shared_pass_is_asked_both_questions(rows):
    _, valid = rows

    class Plain:
        family = "plain"

        def predict_proba(self, r):
            return np.full(len(r), 0.25)

        def feature_contributions(self, r):
            return np.ones(r.features.shape)

    p, contributions = predict_with_contributions(Plain(), replace(valid, events=None))
    assert (p == 0.25).all() and contributions.shape == valid.features.shape
