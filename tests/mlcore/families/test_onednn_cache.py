"""Scoring memory stays flat however many batch shapes the encoder sees (oneDNN's kernel cache is bounded)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlcore.families import ONEDNN_CACHE_DEFAULT, ONEDNN_CACHE_ENV
from mlcore.families.bert.config import cpu_has_native_bf16, packaged_minilm_path

ROOT = Path(__file__).resolve().parents[3]

# Encodes batches of 65..94 texts (a full batch of 64 and a new remainder shape each) with the
# packaged MiniLM under bf16, as scoring does: a first pass at 64 tokens, then three passes at
# shorter lengths, all new shapes. Prints the resident memory after each pass, in MB over the start.
GROWTH = """
import psutil
from mlcore.families.bert.config import BertConfig, load_encoder, load_tokenizer, packaged_minilm_path
from mlcore.families.bert.family import BertFamily
from mlcore.families.bert.model import FusionModel
path = str(packaged_minilm_path())
family = BertFamily(BertConfig(model_path=path, max_length=64, cpu_inference="bf16"))
family.tokenizer = load_tokenizer(path)
family.model = FusionModel(load_encoder(path), 1, 8, 0.0).eval()
words = ("order running shoes 120 EUR; 1-star review: arrived broken, want a refund; ticket: where is my parcel? " * 4).split()
rss = lambda: psutil.Process().memory_info().rss / 2**20
family.encode([" ".join(words)] * 64)
start = rss()
for n_words in (60, 30, 20, 12):
    for rows in range(65, 95):
        family.encode([" ".join(words[:n_words])] * rows)
    print(round(rss() - start), end=" ")
print()
"""


def _python(code: str, *args: str, env: dict) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != ONEDNN_CACHE_ENV}
    return {**env, **extra}


def test_importing_the_families_bounds_the_kernel_cache_unless_the_operator_set_it():
    show = f"import os, mlcore.families; print(os.environ[{ONEDNN_CACHE_ENV!r}])"
    assert _python(show, env=_env()) == ONEDNN_CACHE_DEFAULT
    assert _python(show, env=_env(**{ONEDNN_CACHE_ENV: "256"})) == "256"


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_native_bf16(), reason="bf16 scoring (oneDNN kernels) runs only on CPUs with native bf16")
@pytest.mark.skipif(packaged_minilm_path() is None, reason="needs the packaged MiniLM")
def test_encoding_ever_new_batch_shapes_does_not_keep_growing_memory():
    def growth_after_first_pass(env: dict) -> int:
        after_each_pass = [int(mb) for mb in _python(GROWTH, env=env).split()]
        return max(after_each_pass[1:]) - after_each_pass[0]

    bounded = growth_after_first_pass(_env())
    unbounded = growth_after_first_pass(_env(**{ONEDNN_CACHE_ENV: "1024"}))  # oneDNN's own default
    # Measured on 2 cores: 170-215 MB more over the three later passes unbounded, 30-40 MB bounded.
    assert unbounded > 120, f"unbounded, memory grew only {unbounded} MB: this test no longer shows anything"
    assert bounded < 75, f"memory grew {bounded} MB over 90 new batch shapes with the default cache"
