"""The stacked family: cross-fitting never scores a row with a model that saw it; reasons still work."""
import numpy as np
import pandas as pd
import pytest

from mlcore.dataset import training_rows
from mlcore.families.behaviour import BehaviourBertFamily
from mlcore.families.stacked import StackedConfig, StackedFamily, customer_folds
from tests.mlcore.synth import synth_frames

AS_OF = pd.Timestamp("2025-11-01", tz="UTC")
TINY = dict(layers=1, hidden=16, heads=2, max_events=16, batch_size=64, num_threads=1, epochs=0.5)


@pytest.fixture(scope="module")
def rows():
    return training_rows(*synth_frames(150, days=420, seed=4), as_of=AS_OF, horizon_days=60)


class Recording(BehaviourBertFamily):
    """The real behaviour BERT, remembering which customers it was trained on and which it scored."""

    def fit(self, train, valid, **kw):
        self.seen = set(train.customer_ids.tolist())
        self.scored = []
        return super().fit(train, valid, **kw)

    def predict_proba(self, rows):
        self.scored.append(set(rows.customer_ids.tolist()))
        return super().predict_proba(rows)


def test_folds_are_grouped_by_customer():
    ids = np.repeat(np.arange(40), 3)
    fold = customer_folds(ids, 3, seed=1)
    for c in range(40):
        assert len(set(fold[ids == c])) == 1
    assert set(fold) == {0, 1, 2}


@pytest.mark.slow
def test_cross_fitting_never_scores_a_row_with_a_model_that_saw_it(rows, tmp_path):
    train, valid = rows
    family = StackedFamily(StackedConfig(folds=3, embedding_dims=4, max_train_minutes=0.3, events=TINY),
                           behaviour_factory=lambda cfg: Recording(cfg))
    report = family.fit(train, valid)
    assert report.extra["folds"] == 3 and report.extra["pretraining"] is not None
    for k, model in enumerate(family.fold_models):
        oof_customers = set(train.customer_ids[family.oof_fold == k].tolist())
        assert oof_customers and not oof_customers & model.seen  # never trained on a customer it scores out of fold
        assert model.seen == family.fold_customers[k]
        # The first thing each fold model scored after training: exactly its own held-out fold.
        assert model.scored[0] == oof_customers
    # Reasons: SHAP values of the numeric features only, one column per feature.
    contrib = family.feature_contributions(valid.take(np.arange(5)))
    assert contrib.shape == (5, len(valid.feature_names)) and np.isfinite(contrib).all()
    p = family.predict_proba(valid)
    family.save(tmp_path / "m")
    np.testing.assert_allclose(StackedFamily.load(tmp_path / "m").predict_proba(valid), p, atol=1e-6)
