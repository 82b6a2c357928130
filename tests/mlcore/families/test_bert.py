"""The bert family on a tiny random checkpoint: training, artifacts, fast inference, explanations."""
from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from mlcore.families.base import TextEncoderModel
from mlcore.families.bert import BertCheckpointError, BertConfig, BertFamily, write_tiny_checkpoint
from tests.mlcore.families.bert_data import SIGNAL_SEGMENT, make_rows

pytestmark = pytest.mark.slow  # tiny-BERT fits in nearly every test

# A random tiny encoder needs a far higher learning rate than a pretrained one, and its
# random token table must learn too (frozen by default, which suits pretrained weights).
TINY = dict(lr=2e-3, head_lr=3e-3, epochs=4, progress_bar=False, seed=0, freeze_word_embeddings=False)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return str(write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt"))


@pytest.fixture(scope="module")
def trained(tiny_path):
    family = BertFamily(BertConfig(model_path=tiny_path, **TINY))
    report = family.fit(make_rows(320, seed=1), make_rows(96, seed=2))
    return family, report


def test_tiny_checkpoint_is_a_loadable_bert_with_the_real_tokenizer(tiny_path):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_path, local_files_only=True)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    assert tokenizer.tokenize("arrived broken") == ["arrived", "broken"]


def test_family_implements_the_text_encoder_contract(trained):
    family, _ = trained
    assert isinstance(family, TextEncoderModel)
    assert BertFamily.family == "bert"


def test_fit_learns_the_churn_signal_from_the_text(trained):
    family, report = trained
    test = make_rows(200, seed=3)
    proba = family.predict_proba(test)
    assert proba.dtype == np.float64 and proba.shape == (200,)
    assert roc_auc_score(test.labels, proba) > 0.9  # chance is 0.5
    assert report.n_train == 320 and report.n_valid == 96
    assert report.best_valid_pr_auc > 0.9
    assert report.extra["steps"] > 0 and not report.hit_time_budget


def test_progress_callback_reports_loss_and_validation_pr_auc(tiny_path):
    events = []
    family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "epochs": 1}))
    family.fit(make_rows(64, seed=1), make_rows(32, seed=2), progress=events.append)
    assert events[-1]["step"] == events[-1]["total"] == 4
    assert events[-1]["valid_pr_auc"] is not None and events[-1]["loss"] > 0


def test_save_then_load_scores_identically_from_the_folder_alone(trained, tmp_path):
    family, _ = trained
    test = make_rows(50, seed=4)
    family.save(tmp_path / "artifact")
    # The artifact must not depend on the checkpoint it was trained from.
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "artifact", moved)
    loaded = BertFamily.load(moved)
    assert np.array_equal(loaded.predict_proba(test), family.predict_proba(test))
    assert np.array_equal(loaded.feature_contributions(test), family.feature_contributions(test))
    assert loaded.feature_names == ("noise", "noise_large_scale", "signal")
    assert loaded.fit_report.best_valid_pr_auc == family.fit_report.best_valid_pr_auc
    assert {p.name for p in moved.iterdir()} == {"encoder", "head.safetensors", "bert_family.json"}
    assert (moved / "encoder" / "model.safetensors").is_file() and (moved / "encoder" / "tokenizer.json").is_file()


def test_encode_returns_embeddings_in_the_order_given(trained):
    family, _ = trained
    rng = np.random.default_rng(0)
    texts = ["short", "a much longer text " * 20, "medium length text here", "x", "another " * 7]
    texts = [texts[i] for i in rng.permutation(len(texts))]
    batch = family.encode(texts, precision="fp32")
    one_by_one = np.vstack([family.encode([t], precision="fp32") for t in texts])
    assert batch.shape == (5, 32) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, one_by_one, atol=1e-5)
    assert family.encode([]).shape == (0, 32)


def test_encode_and_occlusion_work_in_chunks(trained, monkeypatch):
    from mlcore.families.bert import family as family_module

    family, _ = trained
    rows = make_rows(23, seed=10)
    whole_emb, whole_effects = family.encode(rows.texts, precision="fp32"), family.text_segment_effects(rows)
    monkeypatch.setattr(family_module, "ENCODE_CHUNK", 5)
    monkeypatch.setattr(family_module, "OCCLUSION_CHUNK", 4)
    np.testing.assert_allclose(family.encode(rows.texts, precision="fp32"), whole_emb, atol=1e-5)
    chunked = family.text_segment_effects(rows)
    assert [[i for i, _ in r] for r in chunked] == [[i for i, _ in r] for r in whole_effects]
    np.testing.assert_allclose([e for r in chunked for _, e in r], [e for r in whole_effects for _, e in r], atol=0.02)


def test_cpu_bf16_training_learns_and_scores_close_to_fp32(tiny_path, trained):
    family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "cpu_train_precision": "bf16", "cpu_inference": "bf16"}))
    family.fit(make_rows(320, seed=1), make_rows(96, seed=2))
    rows = make_rows(40, seed=3)
    bf16 = family.predict_proba(rows)
    assert roc_auc_score(rows.labels, bf16) > 0.9
    fp32 = family.predict_proba_from_embeddings(family.encode(rows.texts, precision="fp32"), rows.features)
    assert not np.array_equal(bf16, fp32) and np.abs(bf16 - fp32).max() < 0.02
    # The same data and seed trained in fp32 (the `trained` fixture) ends with other weights:
    # cpu_train_precision really changed how it trained.
    fp32_trained, _ = trained
    assert not np.array_equal(fp32, fp32_trained.predict_proba_from_embeddings(
        fp32_trained.encode(rows.texts, precision="fp32"), rows.features))


def test_cached_embeddings_give_the_same_probabilities_as_the_full_path(trained):
    family, _ = trained
    rows = make_rows(40, seed=5)
    cached = family.encode(rows.texts)
    assert np.array_equal(family.predict_proba_from_embeddings(cached, rows.features), family.predict_proba(rows))


@pytest.mark.parametrize("mode, tolerance", [("int8", 0.05), ("bf16", 0.05)])
def test_cpu_inference_modes_stay_close_to_fp32(trained, mode, tolerance):
    family, _ = trained
    family = copy.copy(family)
    family.config = dataclasses.replace(family.config, cpu_inference=mode)
    rows = make_rows(100, seed=6)
    fp32 = family.predict_proba_from_embeddings(family.encode(rows.texts, precision="fp32"), rows.features)
    fast = family.predict_proba(rows)
    assert not np.array_equal(fp32, fast)  # the int8 copy / bf16 autocast really ran
    assert np.abs(fp32 - fast).max() < tolerance


def test_auto_cpu_inference_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    from mlcore.families.bert import config as bert_config

    cfg = BertConfig(model_path="")
    for native, expected in ((True, "bf16"), (False, "int8")):
        monkeypatch.setattr(bert_config, "cpu_has_native_bf16", lambda native=native: native)
        assert cfg.resolved_cpu_inference() == expected
        for mode in ("int8", "bf16", "fp32"):  # an explicit mode is taken whatever the hardware
            assert dataclasses.replace(cfg, cpu_inference=mode).resolved_cpu_inference() == mode
    with pytest.raises(ValueError, match="cpu_inference must be one of"):
        BertConfig(model_path="", cpu_inference="fp8")
    with pytest.raises(ValueError, match="cpu_train_precision must be one of fp32, bf16"):
        BertConfig(model_path="", cpu_train_precision="int8")


def test_a_per_call_precision_must_be_a_cpu_precision(trained):
    family, _ = trained
    with pytest.raises(ValueError, match="precision must be one of int8, bf16, fp32"):
        family.encode(["x"], precision="auto")


def test_feature_contributions_are_logit_pushes_per_feature(trained):
    family, _ = trained
    rows = make_rows(200, seed=7)
    contributions = family.feature_contributions(rows)
    assert contributions.shape == (200, 3) and contributions.dtype == np.float64
    # The informative feature pushes churners up and the retained down, on average.
    signal = contributions[:, 2]
    assert signal[rows.labels == 1].mean() > signal[rows.labels == 0].mean()


def test_text_segment_occlusion_finds_the_segment_that_carries_the_signal(trained):
    family, _ = trained
    rows = make_rows(30, seed=8, n_orders=3)
    churners = rows.take(rows.labels == 1)
    effects = family.text_segment_effects(churners, max_segments=8)
    assert all([i for i, _ in row] == [0, 1, 2, 3, 4, 5] for row in effects)  # 6 segments each
    # Removing the bad review lowers P(churn) more than removing any other segment.
    strongest = [min(row, key=lambda e: e[1])[0] for row in effects]
    assert np.mean(np.array(strongest) == SIGNAL_SEGMENT) >= 0.8
    assert all(dict(row)[SIGNAL_SEGMENT] < 0 for row in effects)
    limited = family.text_segment_effects(churners.take(np.arange(2)), max_segments=2, skip_segments=2)
    assert [[i for i, _ in row] for row in limited] == [[2, 3], [2, 3]]


def test_segments_cut_off_by_max_length_have_no_effect(tiny_path):
    family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "epochs": 1, "max_length": 16}))
    family.fit(make_rows(64, seed=1), make_rows(32, seed=2))
    rows = make_rows(3, seed=9, n_orders=5)
    for row in family.text_segment_effects(rows, max_segments=8):
        assert [effect for i, effect in row if i >= 4] == [0.0] * (len(row) - 4)


def test_time_budget_stops_training_cleanly(tiny_path):
    family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "epochs": 50, "max_train_minutes": 0.05}))
    report = family.fit(make_rows(800, seed=1), make_rows(100, seed=2))  # 50 epochs: ~1 min unbudgeted
    # The budget flag, not a wall-clock bound (which flakes on a loaded machine): it stopped itself.
    assert report.hit_time_budget
    assert report.epochs_run < 10 and report.best_valid_pr_auc is not None
    assert family.predict_proba(make_rows(5, seed=3)).shape == (5,)


def test_early_stopping_restores_the_best_validation_weights(tiny_path):
    # A learning rate far too high makes validation PR-AUC peak early and then fall.
    config = BertConfig(
        model_path=tiny_path, **{**TINY, "lr": 3e-2, "head_lr": 3e-2, "epochs": 6, "evals_per_epoch": 4, "patience": 3}
    )
    family = BertFamily(config)
    valid = make_rows(96, seed=2, label_noise=0.2)
    report = family.fit(make_rows(256, seed=1, label_noise=0.2), valid)
    history = report.extra["history"]
    assert report.stopped_early and report.extra["best_step"] < report.extra["steps"]
    assert report.best_valid_pr_auc == max(h["valid_pr_auc"] for h in history) > history[-1]["valid_pr_auc"]
    fp32 = family.predict_proba_from_embeddings(family.encode(valid.texts, precision="fp32"), valid.features)
    assert average_precision_score(valid.labels, fp32) == pytest.approx(report.best_valid_pr_auc, abs=1e-9)


def test_large_validation_sets_are_sampled_keeping_the_churn_rate(tiny_path):
    from mlcore.families.bert.family import _stratified_sample

    labels = np.array([1] * 300 + [0] * 700)
    sample = _stratified_sample(labels, 100, seed=0)
    assert len(sample) == len(set(sample)) == 100 and labels[sample].sum() == 30
    family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "epochs": 1, "max_valid_rows": 40}))
    report = family.fit(make_rows(64, seed=1), make_rows(200, seed=2))
    assert report.n_valid == 200 and report.best_valid_pr_auc is not None
    assert report.extra["n_valid_used"] == 40


def test_training_is_reproducible_with_a_fixed_seed(tiny_path):
    rows, valid, test = make_rows(96, seed=1), make_rows(32, seed=2), make_rows(20, seed=3)
    runs = []
    for _ in range(2):
        family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "epochs": 1}))
        family.fit(rows, valid)
        runs.append(family.predict_proba(test))
    assert np.array_equal(runs[0], runs[1])


def test_frozen_layers_do_not_change(tiny_path):
    from mlcore.families.bert import load_encoder

    # The random head (no linear probe) makes every step move the encoder, and step 0 is no candidate.
    family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "epochs": 1, "freeze_layers": 1, "linear_probe_init": False}))
    family.fit(make_rows(64, seed=1), make_rows(32, seed=2))
    original = load_encoder(tiny_path)
    trained_encoder = family.model.encoder
    assert torch.equal(trained_encoder.embeddings.position_embeddings.weight, original.embeddings.position_embeddings.weight)
    assert torch.equal(trained_encoder.encoder.layer[0].output.dense.weight, original.encoder.layer[0].output.dense.weight)
    assert not torch.equal(trained_encoder.encoder.layer[1].output.dense.weight, original.encoder.layer[1].output.dense.weight)


def test_word_embeddings_are_frozen_by_default_and_can_be_trained(tiny_path):
    from mlcore.families.bert import load_encoder

    original = load_encoder(tiny_path).embeddings.word_embeddings.weight
    for freeze in (True, False):
        family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "epochs": 1, "freeze_word_embeddings": freeze,
                                                                "linear_probe_init": False}))
        family.fit(make_rows(64, seed=1), make_rows(32, seed=2))
        assert torch.equal(family.model.encoder.embeddings.word_embeddings.weight, original) is freeze


def test_length_grouped_batches_cover_every_row_once_per_epoch():
    from mlcore.families.bert.model import training_batches

    lengths = np.random.default_rng(0).integers(5, 128, 1000)
    batches = training_batches(lengths, 16, torch.Generator().manual_seed(0), group_by_length=True)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    padding = lambda bs: sum(len(b) * lengths[b].max() - lengths[b].sum() for b in bs)  # noqa: E731
    shuffled = training_batches(lengths, 16, torch.Generator().manual_seed(0), group_by_length=False)
    assert padding(batches) < padding(shuffled) / 5


def test_length_grouped_training_learns_too(tiny_path):
    family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "group_by_length": True}))
    family.fit(make_rows(320, seed=1), make_rows(96, seed=2))
    test = make_rows(100, seed=3)
    assert roc_auc_score(test.labels, family.predict_proba(test)) > 0.9


def test_lora_training_saves_a_plain_encoder(tiny_path, tmp_path):
    family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "epochs": 1, "use_lora": True}))
    family.fit(make_rows(64, seed=1), make_rows(32, seed=2))
    family.save(tmp_path / "lora")
    loaded = BertFamily.load(tmp_path / "lora")
    rows = make_rows(10, seed=3)
    assert np.array_equal(loaded.predict_proba(rows), family.predict_proba(rows))


def test_missing_feature_values_score_as_the_train_mean(tiny_path):
    rows, valid = make_rows(64, seed=1), make_rows(32, seed=2)
    features = rows.features.copy()
    features[:, 0] = np.nan  # a feature nobody has yet
    features[:5, 1] = np.inf
    rows = dataclasses.replace(rows, features=features)
    family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "epochs": 1}))
    family.fit(rows, valid)
    assert family.feature_mean[0] == 0.0 and family.feature_std[0] == 1.0
    test = make_rows(6, seed=3)
    holes = test.features.copy()
    holes[:, 1] = np.nan
    at_mean = test.features.copy()
    at_mean[:, 1] = family.feature_mean[1]
    emb = family.encode(test.texts)
    proba = family.predict_proba_from_embeddings(emb, holes)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba, family.predict_proba_from_embeddings(emb, at_mean), atol=1e-6)


def test_fit_needs_both_classes(tiny_path):
    rows = make_rows(20, seed=1)
    only_retained = rows.take(rows.labels == 0)
    with pytest.raises(ValueError, match="both churned and retained"):
        BertFamily(BertConfig(model_path=tiny_path, **TINY)).fit(only_retained, only_retained)


def test_scoring_before_training_says_what_to_do(tiny_path):
    with pytest.raises(RuntimeError, match="call fit"):
        BertFamily(BertConfig(model_path=tiny_path)).encode(["x"])


@pytest.mark.parametrize(
    "make_path, problem",
    [
        (lambda tmp: "", "No BERT model path is configured"),
        (lambda tmp: str(tmp / "nowhere"), "does not exist"),
        (lambda tmp: str(tmp), "config.json is missing"),
    ],
)
def test_bad_model_path_names_the_path_and_the_setting(tmp_path, make_path, problem):
    path = make_path(tmp_path)
    with pytest.raises(BertCheckpointError, match=problem) as caught:
        BertFamily(BertConfig(model_path=path))
    assert path in str(caught.value) and "set BERT_MODEL_PATH" in str(caught.value)


def test_checkpoint_without_weights_is_refused(tmp_path, tiny_path):
    shutil.copytree(tiny_path, tmp_path / "broken")
    (tmp_path / "broken" / "model.safetensors").unlink()
    with pytest.raises(BertCheckpointError, match="not a BERT checkpoint: no weights"):
        BertFamily(BertConfig(model_path=str(tmp_path / "broken")))


def test_corrupt_weights_give_a_clear_error(tmp_path, tiny_path):
    shutil.copytree(tiny_path, tmp_path / "corrupt")
    (tmp_path / "corrupt" / "model.safetensors").write_bytes(b"not safetensors")
    family = BertFamily(BertConfig(model_path=str(tmp_path / "corrupt"), **TINY))
    with pytest.raises(BertCheckpointError, match="could not be loaded as a BERT checkpoint"):
        family.fit(make_rows(20, seed=1), make_rows(20, seed=2))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_length", 4, "max_length must be within 8..512"),
        ("warmup_ratio", 1.5, "warmup_ratio"),
        ("device", "tpu", "device must be"),
        ("batch_size", 0, "batch_size must be positive"),
    ],
)
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        BertConfig(model_path="x", **{field: value})


def test_config_picks_batch_sizes_for_the_device():
    config = BertConfig(model_path="x", device="cpu")
    assert (config.train_batch_size(), config.inference_batch_size()) == (16, 64)
    assert BertConfig(model_path="x", batch_size=8).train_batch_size() == 8


def test_linear_probe_is_the_step_zero_candidate_and_kept_when_fine_tuning_cannot_beat_it(tiny_path):
    """With learning rates too small to change anything, early stopping must return the probe itself:
    a class-weighted logistic regression on the standardised features, the text ignored."""
    from sklearn.linear_model import LogisticRegression

    train, valid, test = make_rows(96, seed=1), make_rows(48, seed=2), make_rows(30, seed=3)
    family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "epochs": 1, "lr": 1e-12, "head_lr": 1e-12}))
    report = family.fit(train, valid)
    assert report.extra["history"][0]["step"] == 0 and report.extra["best_step"] == 0
    x = family._standardise(train.features)
    y = np.asarray(train.labels)
    probe = LogisticRegression(C=1.0, max_iter=2000).fit(x, y, sample_weight=np.where(y == 1, (y == 0).sum() / y.sum(), 1.0))
    expected = probe.predict_proba(family._standardise(test.features))[:, 1]
    assert np.allclose(family.predict_proba(test), expected, atol=1e-4)


def test_a_head_saved_without_the_wide_term_still_loads(tiny_path, tmp_path):
    from safetensors.torch import load_file, save_file

    family = BertFamily(BertConfig(model_path=tiny_path, **{**TINY, "epochs": 1, "linear_probe_init": False}))
    family.fit(make_rows(32, seed=1), make_rows(16, seed=2))
    family.model.head.wide.weight.data.zero_()
    family.model.head.wide.bias.data.zero_()
    family.save(tmp_path / "v")
    head = load_file(tmp_path / "v" / "head.safetensors")
    save_file({k: v for k, v in head.items() if not k.startswith("wide.")}, tmp_path / "v" / "head.safetensors")
    rows = make_rows(10, seed=3)
    assert np.allclose(BertFamily.load(tmp_path / "v").predict_proba(rows), family.predict_proba(rows), atol=1e-6)


@pytest.mark.parametrize(
    "old_keys, expected_inference, expected_training",
    [
        # Saved before cpu_inference existed: int8 under "auto" was the only CPU choice then.
        ({"quantize_inference": True, "cpu_bf16": False}, "auto", "fp32"),
        ({"cpu_inference": "auto", "quantize_inference": True, "cpu_bf16": True}, "auto", "bf16"),
        ({"cpu_inference": "auto", "quantize_inference": False, "cpu_bf16": False}, "fp32", "fp32"),
        ({"cpu_inference": "auto", "quantize_inference": False, "cpu_bf16": True}, "bf16", "bf16"),
        ({"cpu_inference": "int8", "quantize_inference": False, "cpu_bf16": True}, "int8", "bf16"),
    ],
)
def test_an_artifact_saved_with_the_old_precision_switches_loads_and_scores_the_same(
    trained, tmp_path, old_keys, expected_inference, expected_training
):
    """Format 1 artifacts decided CPU precision with quantize_inference and cpu_bf16 next to
    cpu_inference; loading maps them onto cpu_inference / cpu_train_precision."""
    family, _ = trained
    family.save(tmp_path / "v")
    meta_file = tmp_path / "v" / "bert_family.json"
    meta = json.loads(meta_file.read_text())
    assert meta["format"] == 2 and "cpu_train_precision" in meta["config"] and "cpu_bf16" not in meta["config"]
    # Rewrite it as the old code wrote it, with a setting no field has any more.
    config = {k: v for k, v in meta["config"].items() if k not in ("cpu_inference", "cpu_train_precision")}
    meta.update(format=1, config={**config, **old_keys, "a_removed_setting": 3})
    meta_file.write_text(json.dumps(meta))

    loaded = BertFamily.load(tmp_path / "v")
    assert (loaded.config.cpu_inference, loaded.config.cpu_train_precision) == (expected_inference, expected_training)
    reference = copy.copy(family)
    reference.config = dataclasses.replace(family.config, cpu_inference=expected_inference)
    rows = make_rows(30, seed=8)
    assert np.array_equal(loaded.predict_proba(rows), reference.predict_proba(rows))
    assert loaded.text_segment_effects(rows) == reference.text_segment_effects(rows)


def test_an_artifact_of_an_unknown_format_is_refused(trained, tmp_path):
    family, _ = trained
    family.save(tmp_path / "v")
    meta_file = tmp_path / "v" / "bert_family.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "format": 99}))
    with pytest.raises(ValueError, match="unsupported bert artifact format 99"):
        BertFamily.load(tmp_path / "v")
