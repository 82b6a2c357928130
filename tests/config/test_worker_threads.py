"""A worker's pool processes share the cores for torch instead of each using all of them."""
import os
from types import SimpleNamespace

import pytest

from config.celery import share_cores_between_pool_processes
from mlcore.families.bert.config import BertConfig
from mlcore.threads import process_threads

CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("concurrency", "setting", "expected"), [
    (1, 0, CORES),
    (2, 0, max(1, CORES // 2)),
    (64, 0, 1),
    (2, 3, 3),  # an explicit ML_TORCH_THREADS wins
    ("auto", 0, CORES),
])
def test_worker_start_sets_each_pool_process_share(monkeypatch, settings, concurrency, setting, expected):
    monkeypatch.setenv("ML_TORCH_THREADS", "")  # recorded, so the value the handler sets is undone after
    settings.ML_TORCH_THREADS = setting
    share_cores_between_pool_processes(sender=SimpleNamespace(concurrency=concurrency))
    assert os.environ["ML_TORCH_THREADS"] == str(expected)
    assert process_threads() == expected


def test_torch_follows_the_share_unless_the_model_config_names_a_count(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("ML_TORCH_THREADS", "1")
        BertConfig(model_path="").apply_threads()
        assert torch.get_num_threads() == 1
        BertConfig(model_path="", num_threads=2).apply_threads()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
