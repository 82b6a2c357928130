"""Continued masked-LM pretraining on a tiny checkpoint: loss goes down, the output is a usable checkpoint."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command

from mlcore.families.bert import BertCheckpointError, BertConfig, BertFamily, load_encoder, write_tiny_checkpoint
from mlcore.pretrain import PretrainConfig, mask_tokens, pretrain_mlm, read_texts
from tests.mlcore.families.bert_data import make_rows

pytestmark = pytest.mark.slow  # masked-LM pretraining of a tiny BERT in every test

FAST = dict(lr=5e-3, epochs=6, batch_size=16, progress_bar=False, max_length=64)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return str(write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt"))


@pytest.fixture(scope="module")
def corpus():
    return make_rows(160, seed=11).texts


@pytest.fixture(scope="module")
def pretrained(tiny_path, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "mlm"
    return pretrain_mlm(corpus, model_path=tiny_path, out_dir=out, config=PretrainConfig(**FAST))


def test_pretraining_lowers_the_held_out_masked_lm_loss(pretrained):
    assert pretrained.steps > 0 and pretrained.n_eval == 16 and pretrained.samples_per_s > 0
    assert pretrained.eval_loss_after < pretrained.eval_loss_before - 1.0
    # The tiny checkpoint is a bare BertModel: its MLM head had to be made, and we say so.
    assert pretrained.mlm_head_initialised_fresh


def test_pretrained_folder_is_a_checkpoint_the_family_can_fine_tune(pretrained, tiny_path):
    family = BertFamily(BertConfig(model_path=pretrained.out_dir, lr=2e-3, epochs=1, progress_bar=False))
    report = family.fit(make_rows(64, seed=1), make_rows(32, seed=2))
    assert report.extra["source_model_path"] == pretrained.out_dir
    # The encoder weights really changed relative to the source checkpoint.
    before, after = load_encoder(tiny_path), load_encoder(pretrained.out_dir)
    assert not torch.equal(before.embeddings.word_embeddings.weight, after.embeddings.word_embeddings.weight)
    saved = json.loads((Path(pretrained.out_dir) / "pretrain_report.json").read_text())
    assert saved["eval_loss_after"] == pretrained.eval_loss_after


def test_a_second_round_reuses_the_trained_mlm_head(pretrained, corpus, tmp_path):
    again = pretrain_mlm(
        corpus, model_path=pretrained.out_dir, out_dir=tmp_path / "again", config=PretrainConfig(**{**FAST, "epochs": 0.2})
    )
    assert not again.mlm_head_initialised_fresh


def test_time_budget_stops_pretraining(tiny_path, tmp_path):
    texts = make_rows(2000, seed=12).texts
    config = PretrainConfig(**{**FAST, "epochs": 20, "max_train_minutes": 0.1})  # 20 epochs: minutes unbudgeted
    report = pretrain_mlm(texts, model_path=tiny_path, out_dir=tmp_path / "budget", config=config)
    # The budget flag, not a wall-clock bound: the run stopped itself long before its 20 epochs.
    assert report.hit_time_budget and report.epochs_run < 5


def test_masking_follows_the_bert_recipe():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (64, 128))
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    attention = torch.ones_like(ids)
    attention[:, 100:] = 0
    inputs, labels = mask_tokens(
        ids, attention, special_ids=torch.tensor([0, 100, 101, 102, 103]), mask_id=103, vocab_size=30522,
        probability=0.15, generator=generator,
    )
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 100:].any()  # never specials or padding
    assert abs(chosen[:, 1:100].float().mean().item() - 0.15) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])
    assert abs((inputs[chosen] == 103).float().mean().item() - 0.8) < 0.03
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_refuses_a_bad_model_path_and_an_occupied_output(tmp_path, tiny_path):
    with pytest.raises(BertCheckpointError, match="set BERT_MODEL_PATH"):
        pretrain_mlm(["a b c"] * 5, model_path=str(tmp_path / "missing"), out_dir=tmp_path / "out")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ValueError, match="already exists"):
        pretrain_mlm(["a b c"] * 5, model_path=tiny_path, out_dir=tmp_path / "taken")
    with pytest.raises(ValueError, match="at least 4 non-empty texts"):
        pretrain_mlm(["one", " "], model_path=tiny_path, out_dir=tmp_path / "few")


def test_read_texts_keeps_segment_separators_in_jsonl(tmp_path):
    (tmp_path / "texts.jsonl").write_text('"profile\\nreview 1 stars"\n{"text": "a\\nb"}\n\n')
    assert read_texts(tmp_path / "texts.jsonl") == ["profile\nreview 1 stars", "a\nb"]
    (tmp_path / "texts.txt").write_text("one\n\ntwo\n")
    assert read_texts(tmp_path / "texts.txt") == ["one", "two"]
    (tmp_path / "bad.jsonl").write_text('{"id": 3}\n')
    with pytest.raises(ValueError, match=r'bad.jsonl:1: expected a JSON string or an object with a "text"'):
        read_texts(tmp_path / "bad.jsonl")


def test_pretrain_command_writes_a_checkpoint(tmp_path, tiny_path, corpus):
    texts = tmp_path / "texts.jsonl"
    texts.write_text("\n".join(json.dumps(t) for t in corpus[:40]))
    out = io.StringIO()
    call_command(
        "pretrain", texts=str(texts), model_path=tiny_path, out=str(tmp_path / "ckpt"), epochs=1,
        no_progress=True, stdout=out,
    )
    assert "Pretraining" in out.getvalue() and "no masked-LM head; a fresh one was trained" in out.getvalue()
    assert f"BERT_MODEL_PATH={tmp_path / 'ckpt'}" in out.getvalue()
    assert load_encoder(str(tmp_path / "ckpt")).config.hidden_size == 32


def test_pretrain_command_names_the_setting_for_a_bad_model_path(tmp_path, settings, corpus):
    settings.BERT_MODEL_PATH = str(tmp_path / "gone")
    texts = tmp_path / "texts.jsonl"
    texts.write_text("\n".join(json.dumps(t) for t in corpus[:10]))
    with pytest.raises(CommandError, match=r"gone does not exist; set BERT_MODEL_PATH"):
        call_command("pretrain", texts=str(texts), out=str(tmp_path / "o"), no_progress=True, stdout=io.StringIO())


@pytest.mark.django_db
def test_pretrain_command_reads_customer_texts_before_as_of(tmp_path, tiny_path):
    from datetime import datetime, timedelta, timezone

    from crm_plugin.models import Event
    from tests.crm_plugin.factories import CustomerFactory, EventFactory

    as_of = datetime(2026, 10, 1, tzinfo=timezone.utc)
    for i in range(6):
        customer = CustomerFactory(first_seen_at=as_of - timedelta(days=300))
        EventFactory(customer=customer, occurred_at=as_of - timedelta(days=20 + i))
        EventFactory(customer=customer, kind=Event.Kind.REVIEW, amount=None, rating=1,
                     text=f"arrived broken {i}", occurred_at=as_of - timedelta(days=5))
        EventFactory(customer=customer, occurred_at=as_of + timedelta(days=3))  # after as_of: unseen
    out = io.StringIO()
    call_command("pretrain", as_of="2026-10-01", model_path=tiny_path, out=str(tmp_path / "ckpt"), no_progress=True,
                 stdout=out)
    assert "on 6 texts" in out.getvalue()
    report = json.loads((tmp_path / "ckpt" / "pretrain_report.json").read_text())
    assert report["n_texts"] == 6


@pytest.mark.django_db
def test_pretrain_command_without_history_says_so(tmp_path, tiny_path):
    with pytest.raises(CommandError, match="no customer events before 2026-10-01"):
        call_command("pretrain", as_of="2026-10-01", model_path=tiny_path, out=str(tmp_path / "o"), no_progress=True,
                     stdout=io.StringIO())
