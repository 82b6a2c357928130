"""train_family / TrainedModel: baselines learn, calibrate on validation, round-trip through save/load."""
import numpy as np
import pandas as pd
import pytest

from mlcore.dataset import training_rows
from mlcore.errors import ArtifactError, MlError
from mlcore.families.base import ChurnModel
from mlcore.families.baselines import LightgbmFamily, LogregFamily
from mlcore.training import TrainedModel, train_family
from tests.mlcore.synth import synth_frames

pytestmark = pytest.mark.slow  # fits every family

AS_OF = pd.Timestamp("2025-12-01", tz="UTC")


@pytest.fixture(scope="module")
def rows():
    return training_rows(*synth_frames(250, days=420, seed=11), as_of=AS_OF, horizon_days=90)


@pytest.mark.parametrize("name, cls", [("logreg", LogregFamily), ("lightgbm", LightgbmFamily)])
def test_baseline_learns_is_calibrated_and_survives_save_load(rows, tmp_path, name, cls):
    train, valid = rows
    trained = train_family(name, train, valid)
    assert isinstance(trained.model, cls) and isinstance(trained.model, ChurnModel)
    assert trained.valid_metrics["pr_auc"] > valid.labels.mean() + 0.15  # far better than guessing
    assert trained.valid_metrics["roc_auc"] > 0.8
    p = trained.predict_proba(valid)
    # Platt on validation: the average probability matches the validation churn rate.
    assert p.mean() == pytest.approx(valid.labels.mean(), abs=0.03)
    contributions = trained.model.feature_contributions(valid)
    assert contributions.shape == (len(valid), len(valid.feature_names)) and np.isfinite(contributions).all()
    trained.save(tmp_path)
    assert {"calibration.json", "schema.json", "metrics.json"} <= {f.name for f in tmp_path.iterdir()}
    loaded = TrainedModel.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_proba(valid), p, rtol=1e-6, atol=1e-9)
    assert loaded.family == name and loaded.feature_names == trained.feature_names


def test_calibrate_maps_raw_scores_like_predict_proba(rows):
    train, valid = rows
    trained = train_family("logreg", train, valid)
    np.testing.assert_allclose(trained.calibrate(trained.model.predict_proba(valid)), trained.predict_proba(valid))


def test_unknown_family_lists_the_choices(rows):
    with pytest.raises(MlError, match="unknown model family 'xgboost'; choose from .*logreg.*lightgbm"):
        train_family("xgboost", *rows)


def test_training_without_churners_is_refused_clearly(rows):
    train, valid = rows
    stayers = train.take(train.labels == 0)
    with pytest.raises((MlError, ValueError)):
        train_family("logreg", stayers, valid)


def test_incomplete_model_folder_is_refused(rows, tmp_path):
    trained = train_family("logreg", *rows)
    trained.save(tmp_path)
    (tmp_path / "calibration.json").unlink()
    with pytest.raises(ArtifactError, match="cannot be loaded"):
        TrainedModel.load(tmp_path)


def test_tiny_bert_trains_within_its_budget_and_round_trips(rows, tmp_path):
    train, valid = rows
    small_train = train.take(np.arange(0, len(train), max(1, len(train) // 160)))
    small_valid = valid.take(np.arange(min(80, len(valid))))
    trained = train_family("bert", small_train, small_valid, tiny=True, max_train_minutes=0.5)
    assert trained.fit_report.extra["steps"] > 0  # it trained; the budget itself is tested in test_bert.py
    p = trained.predict_proba(small_valid)
    assert p.shape == (len(small_valid),) and ((0 <= p) & (p <= 1)).all()
    trained.save(tmp_path)
    np.testing.assert_allclose(TrainedModel.load(tmp_path).predict_proba(small_valid), p, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bert_events", "bert_events_pretrained", "stacked"])
def test_behaviour_bert_trains_through_the_contract_and_round_trips(rows, tmp_path, name):
    from mlcore.training import TrainedModel

    train, valid = rows
    trained = train_family(name, train, valid, tiny=True, max_train_minutes=0.1)
    extra = trained.fit_report.extra
    assert min(extra["fold_validations"]) >= 5 if name == "stacked" else extra["validations"] >= 5
    if name == "bert_events_pretrained":
        pre = trained.params["pretraining"]
        assert trained.fit_report.extra["pretrained"] and pre["eval_loss_after"] < pre["eval_loss_before"]
    trained.save(tmp_path / "m")
    again = TrainedModel.load(tmp_path / "m")
    np.testing.assert_allclose(again.predict_proba(valid), trained.predict_proba(valid), atol=1e-6)
