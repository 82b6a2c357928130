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

# Encodes batches of 1..10 texts (ten shapes, four oneDNN kernels each) with the packaged MiniLM
# under bf16, as scoring does, then the same ten shapes again; oneDNN reports each kernel it
# creates (ONEDNN_VERBOSE=profile_create) as a cache hit or miss, on stdout after our marker line.
SECOND_PASS_MISSES = """
from mlcore.families.bert.config import BertConfig, load_encoder, load_tokenizer, packaged_minilm_path
from mlcore.families.bert.family import BertFamily
from mlcore.families.bert.model import FusionModel
path = str(packaged_minilm_path())
family = BertFamily(BertConfig(model_path=path, max_length=64, cpu_inference="bf16"))
family.tokenizer = load_tokenizer(path)
family.model = FusionModel(load_encoder(path), 1, 8, 0.0).eval()
for rows in range(1, 11):
    family.encode(["order running shoes, 1-star review: arrived broken"] * rows)
print("second pass", flush=True)
for rows in range(1, 11):
    family.encode(["order running shoes, 1-star review: arrived broken"] * rows)
"""


def _python(code: str, *, env: dict) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
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
def test_the_encoder_keeps_only_a_few_batch_shapes_compiled():
    """Each kept shape holds 10-20 MB (docs/bert.md), so kernels must be dropped, not hoarded.

    Memory itself varies too much between runs to assert on; what keeps it flat is that oneDNN
    evicts old kernels, which its own report shows deterministically.
    """
    def second_pass_misses(env: dict) -> int:
        done = subprocess.run([sys.executable, "-c", SECOND_PASS_MISSES], cwd=ROOT, capture_output=True, text=True,
                              env={**env, "ONEDNN_VERBOSE": "profile_create"}, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        second = done.stdout.split("second pass", 1)[1]
        return second.count("create:cache_miss")

    assert second_pass_misses(_env(**{ONEDNN_CACHE_ENV: "1024"})) == 0  # oneDNN's default keeps all ten
    assert second_pass_misses(_env()) > 0  # ours kept too few of them to see the first shapes again
