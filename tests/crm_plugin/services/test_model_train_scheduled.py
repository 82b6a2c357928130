"""The weekly retraining pretrains the behaviour encoder first when a family starts from it."""
from __future__ import annotations

import pytest

from crm_plugin.scoring import services
from crm_plugin.scoring.tasks import train_weekly


@pytest.fixture
def calls(monkeypatch):
    seen: list[tuple] = []
    monkeypatch.setattr(services, "events_encoder_pretrain", lambda **kw: seen.append(("pretrain",)))
    monkeypatch.setattr(services, "model_train_all", lambda **kw: seen.append(("train", tuple(kw["families"]),
                                                                               kw["max_train_minutes"])) or [])
    return seen


def test_stacked_in_the_weekly_families_pretrains_the_encoder_before_training(calls, settings):
    settings.ML_TRAIN_FAMILIES = ["logreg", "stacked"]
    settings.ML_BERT_MAX_TRAIN_MINUTES = 7.0
    train_weekly()
    assert calls == [("pretrain",), ("train", ("logreg", "stacked"), 7.0)]


def test_families_that_do_not_read_the_encoder_skip_the_pretraining(calls, settings):
    settings.ML_TRAIN_FAMILIES = ["logreg", "lightgbm", "bert_events"]
    train_weekly()
    assert calls == [("train", ("logreg", "lightgbm", "bert_events"), settings.ML_BERT_MAX_TRAIN_MINUTES)]
