"""Every model that runs torch at scoring time uses the process's share of the cores ($ML_TORCH_THREADS).

A worker with two pool processes on two cores gives each one thread; the behaviour BERT and the
stacked family's encoder used to keep torch's default (every core) in each process, so the two
processes ran four threads on two cores and scored slower together than one process alone.
"""
import numpy as np
import pandas as pd
import pytest
import torch

from mlcore.dataset import training_rows
from mlcore.families.behaviour import EventEncoder
from mlcore.families.stacked import StackedConfig, StackedFamily
from mlcore.threads import process_threads, use_torch_threads
from tests.mlcore.families.behaviour_models import TINY, untrained_behaviour
from tests.mlcore.synth import synth_frames


@pytest.fixture(scope="module")
def valid():
    return training_rows(*synth_frames(60, days=420, seed=5), as_of=pd.Timestamp("2025-11-01", tz="UTC"),
                         horizon_days=60)[1]


@pytest.fixture
def two_threads_then_a_share_of_one(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setenv("ML_TORCH_THREADS", "1")
    yield
    torch.set_num_threads(before)


def test_the_behaviour_bert_scores_with_the_process_share(valid, two_threads_then_a_share_of_one):
    untrained_behaviour(valid.feature_names).predict_proba(valid)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    untrained_behaviour(valid.feature_names, num_threads=2).predict_proba(valid)  # an explicit count wins
    assert torch.get_num_threads() == 2


def test_the_stacked_encoder_scores_with_the_process_share(valid, two_threads_then_a_share_of_one):
    stacked = StackedFamily(StackedConfig(folds=2, embedding_dims=4, events=TINY))
    stacked.encoder = EventEncoder(1, 16, 2, 16).eval()
    stacked.pca_mean = np.zeros(16, np.float32)
    stacked.pca_components = np.ones((4, 16), np.float32)
    assert stacked._embed(valid).shape == (len(valid), 4)
    assert torch.get_num_threads() == 1


def test_the_share_comes_from_the_environment(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("ML_TORCH_THREADS", "1")
        use_torch_threads()
        assert torch.get_num_threads() == 1
        use_torch_threads(2)
        assert torch.get_num_threads() == 2
        monkeypatch.delenv("ML_TORCH_THREADS")
        assert process_threads() == len(__import__("os").sched_getaffinity(0))
        monkeypatch.setenv("ML_TORCH_THREADS", "two")
        with pytest.raises(ValueError, match="ML_TORCH_THREADS must be a whole number"):
            process_threads()
    finally:
        torch.set_num_threads(before)
