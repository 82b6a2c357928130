"""The `bert` family: a pretrained encoder fine-tuned together with a head over numeric features."""
from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import average_precision_score
from tqdm.auto import tqdm

from mlcore.families.base import FitReport, ProgressCallback, Rows
from mlcore.families.bert.config import (
    CPU_PRECISIONS,
    BertConfig,
    check_checkpoint,
    load_encoder,
    load_tokenizer,
    packaged_minilm_path,
    quiet_transformers,
)
from mlcore.families.bert.model import (
    FusionModel,
    autocast_for,
    embed_token_lists,
    training_batches,
    pad_batch,
    param_groups,
    quantized_copy,
)

# 2: CPU precision is `cpu_inference` (scoring) and `cpu_train_precision` (training) alone.
# Older formats still load: `_config_kwargs` translates what they saved.
ARTIFACT_FORMAT = 2
LOADABLE_FORMATS = (1, 2)
META_FILE = "bert_family.json"
HEAD_FILE = "head.safetensors"
ENCODER_DIR = "encoder"  # a complete HF checkpoint (weights + tokenizer): usable as model_path
FEATURE_CLIP = 10.0  # standardised features beyond +-10 sd are data errors, not signal
HEAD_BATCH = 8192
ENCODE_CHUNK = 4096  # texts tokenised and length-sorted together
OCCLUSION_CHUNK = 512  # rows whose occluded variants are encoded together


def _stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` row positions (sorted) with the same share of each label as `labels`."""
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)
    n_pos = min(len(positives), max(1, round(size * len(positives) / len(labels))))
    chosen = np.concatenate([
        rng.choice(positives, n_pos, replace=False),
        rng.choice(negatives, min(len(negatives), size - n_pos), replace=False),
    ])
    return np.sort(chosen)


def _init_wide_from_logreg(model: FusionModel, x: np.ndarray, y: np.ndarray, *, pos_weight: float,
                           sample_weight: np.ndarray | None, seed: int) -> None:
    """Set the head's wide term to an L2 logistic regression on the standardised features.

    The deep term keeps its small random init: zeroing its output layer would make the probe
    exact at step 0 but starves the encoder of gradient (measured on the tiny test task: test
    ROC-AUC 0.76 after 80 steps vs 1.0 with the random init)."""
    from sklearn.linear_model import LogisticRegression

    w = np.where(y == 1, pos_weight, 1.0)
    if sample_weight is not None:
        w = w * sample_weight
    probe = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x, y, sample_weight=w)
    head = model.head
    with torch.no_grad():
        head.wide.weight.copy_(torch.as_tensor(probe.coef_, dtype=head.wide.weight.dtype))
        head.wide.bias.copy_(torch.as_tensor(probe.intercept_, dtype=head.wide.bias.dtype))


def _config_kwargs(saved: dict, artifact_format: int) -> dict:
    """BertConfig keyword arguments from the config an artifact of `artifact_format` saved.

    The one place that knows what older formats wrote, so that BertConfig carries no switch
    only to keep old artifacts loading; each translation keeps the scores the artifact gave.
    """
    saved = dict(saved)
    if artifact_format == 1:
        # Format 1 had two more precision switches. quantize_inference=False meant "never int8"
        # when cpu_inference was "auto" (or absent, in artifacts older than cpu_inference): bf16
        # autocast with cpu_bf16, else fp32. cpu_bf16 also meant bf16 autocast for CPU training.
        quantize_inference = saved.pop("quantize_inference", True)
        cpu_bf16 = saved.pop("cpu_bf16", False)
        if saved.get("cpu_inference", "auto") == "auto" and not quantize_inference:
            saved["cpu_inference"] = "bf16" if cpu_bf16 else "fp32"
        saved["cpu_train_precision"] = "bf16" if cpu_bf16 else "fp32"
    # A key no BertConfig field has any more is dropped rather than refused: the weights, head
    # and feature statistics are what scoring needs, and a removed setting that changed scores
    # must be translated above, under a new format number, before its field goes.
    fields = {f.name for f in dataclasses.fields(BertConfig)}
    return {key: value for key, value in saved.items() if key in fields}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class BertFamily:
    """Encoder mean-pooled output + standardised numeric features -> MLP head -> P(churn)."""

    family: ClassVar[str] = "bert"

    def __init__(self, config: BertConfig | None = None):
        if config is None:
            packaged = packaged_minilm_path()
            config = BertConfig(model_path=str(packaged) if packaged else "")
        check_checkpoint(config.model_path)  # fail now, with the path in the message
        self.config = config
        self.model: FusionModel | None = None
        self.tokenizer = None
        self.feature_names: tuple[str, ...] = ()
        self.feature_mean: np.ndarray | None = None
        self.feature_std: np.ndarray | None = None
        self.fit_report: FitReport | None = None
        self._quantized_encoder: torch.nn.Module | None = None

    # --- plumbing shared by training and inference ------------------------------------
    @property
    def device(self) -> torch.device:
        return self.config.resolved_device()

    def _require_model(self) -> FusionModel:
        if self.model is None:
            raise RuntimeError("this BertFamily has no weights yet: call fit() or BertFamily.load()")
        return self.model

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(list(texts), truncation=True, max_length=self.config.max_length)["input_ids"]

    @property
    def _with_token_types(self) -> bool:
        return "token_type_ids" in self.tokenizer.model_input_names

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(self.feature_mean):
            raise ValueError(f"expected features of shape [n, {len(self.feature_mean)}], got {features.shape}")
        x = (features - self.feature_mean) / self.feature_std
        # A missing value (NaN) becomes the train mean, i.e. 0 after standardising.
        x = np.where(np.isfinite(x), x, 0.0)
        return np.clip(x, -FEATURE_CLIP, FEATURE_CLIP).astype(np.float32)

    def _embed_tokens(self, encoder: torch.nn.Module, token_lists: list[list[int]], *, cpu_precision: str,
                      sort: bool = True) -> np.ndarray:
        """Mean-pooled embeddings in the original order, computed in length-sorted batches.

        `cpu_precision` must match `encoder`: "int8" for the quantised copy (run as is), "bf16" or
        "fp32" for the model's own encoder (`_inference_encoder` returns the pair)."""
        self._require_model()
        # The int8 copy only exists on CPU, where the model is too.
        return embed_token_lists(encoder, token_lists, pad_id=self.tokenizer.pad_token_id, device=self.device,
                                 batch_size=self.config.inference_batch_size(),
                                 with_token_types=self._with_token_types, cpu_precision=cpu_precision, sort=sort)

    def _head_logits(self, embeddings: np.ndarray, x_std: np.ndarray) -> np.ndarray:
        model = self._require_model()
        model.head.eval()
        logits = np.empty(len(embeddings), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(embeddings), HEAD_BATCH):
                emb = torch.from_numpy(np.ascontiguousarray(embeddings[start : start + HEAD_BATCH], dtype=np.float32))
                feats = torch.from_numpy(x_std[start : start + HEAD_BATCH])
                logit = model.head(emb.to(self.device), feats.to(self.device))
                logits[start : start + len(emb)] = logit.float().cpu().numpy()
        return logits

    def _wide_logits(self, x_std: np.ndarray) -> np.ndarray:
        wide = self._require_model().head.wide
        with torch.inference_mode():
            return wide(torch.from_numpy(x_std).to(wide.weight.device)).squeeze(-1).float().cpu().numpy()

    def _inference_encoder(self, precision: str | None) -> tuple[torch.nn.Module, str]:
        """(encoder, CPU precision) for scoring: config.resolved_cpu_inference(), or `precision`
        ("int8" / "bf16" / "fp32") for this call only. CUDA always runs bf16 autocast, never int8."""
        model = self._require_model()
        if self.device.type != "cpu":
            return model.encoder, "bf16"
        if precision is not None and precision not in CPU_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(CPU_PRECISIONS)} (or None), got {precision!r}")
        mode = precision or self.config.resolved_cpu_inference()
        if mode != "int8":
            return model.encoder, mode
        if self._quantized_encoder is None:
            self._quantized_encoder = quantized_copy(
                model.encoder, include_ffn_output=self.config.quantize_ffn_output
            )
        return self._quantized_encoder, mode

    # --- training ------------------------------------------------------------------------
    def fit(self, train: Rows, valid: Rows, *, progress: ProgressCallback | None = None) -> FitReport:
        cfg = self.config
        if train.labels is None:
            raise ValueError("train rows need labels")
        y_train = np.asarray(train.labels, dtype=np.float32)
        n_pos = int(y_train.sum())
        if n_pos == 0 or n_pos == len(y_train):
            raise ValueError(f"train rows need both churned and retained customers (got {n_pos} churned of {len(y_train)})")
        started = time.monotonic()
        budget_s = cfg.max_train_minutes * 60 if cfg.max_train_minutes else None

        # 1. Reproducibility and hardware: fixed seeds, every core, the configured device.
        cfg.apply_threads()
        _seed_everything(cfg.seed)
        device = self.device

        # 2. Model: the pretrained encoder (fresh from the checkpoint) + a new head.
        self.tokenizer = load_tokenizer(cfg.model_path)
        encoder = load_encoder(cfg.model_path)
        n_layers = len(encoder.encoder.layer) if hasattr(encoder, "encoder") else 0
        if cfg.freeze_layers > n_layers:
            raise ValueError(f"freeze_layers={cfg.freeze_layers} but the encoder has only {n_layers} layers")
        if cfg.freeze_word_embeddings:
            encoder.get_input_embeddings().requires_grad_(False)
        if cfg.freeze_layers:
            for module in [encoder.embeddings, *encoder.encoder.layer[: cfg.freeze_layers]]:
                module.requires_grad_(False)
        if cfg.use_lora:
            from peft import LoraConfig, get_peft_model

            encoder = get_peft_model(
                encoder,
                LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.1, target_modules=["query", "value"]),
            )
        self.feature_names = tuple(train.feature_names)
        finite = np.where(np.isfinite(train.features), train.features, np.nan).astype(np.float64)
        with warnings.catch_warnings():  # an all-missing column is fine: mean 0, sd 1
            warnings.simplefilter("ignore", RuntimeWarning)
            self.feature_mean = np.nan_to_num(np.nanmean(finite, axis=0))
            std = np.nan_to_num(np.nanstd(finite, axis=0))
        self.feature_std = np.where(std > 1e-6, std, 1.0)
        model = FusionModel(encoder, len(self.feature_names), cfg.head_hidden, cfg.dropout).to(device)
        self.model, self._quantized_encoder = model, None

        # 3. Data: tokenise once; batches are padded dynamically to their longest row.
        train_tokens = self._tokenize(train.texts)
        train_lengths = np.array([len(t) for t in train_tokens], dtype=np.int64)
        x_train = torch.from_numpy(self._standardise(train.features))
        weights = None if train.sample_weight is None else torch.as_tensor(train.sample_weight, dtype=torch.float32)
        n_valid_given = len(valid) if valid is not None else 0
        has_valid = valid is not None and valid.labels is not None and 0 < int(np.sum(valid.labels)) < len(valid)
        if has_valid and cfg.max_valid_rows and len(valid) > cfg.max_valid_rows:
            # Each validation pass runs the encoder over every row; on a CPU a few thousand
            # rows would eat the time budget. A stratified, seeded sample keeps the churn rate.
            valid = valid.take(_stratified_sample(np.asarray(valid.labels), cfg.max_valid_rows, cfg.seed))
        valid_tokens = self._tokenize(valid.texts) if has_valid else []
        x_valid = self._standardise(valid.features) if has_valid else None

        # 4. Loss: BCE on logits, positives up-weighted by negatives/positives of train.
        pos_weight = (len(y_train) - n_pos) / n_pos if cfg.class_weighting else 1.0
        if cfg.linear_probe_init:
            # Linear probing before fine-tuning: the wide term starts as a logistic regression
            # on the features (same class weighting), so fine-tuning starts near the logreg
            # baseline and learns what the text adds on top of it.
            _init_wide_from_logreg(model, x_train.numpy(), y_train, pos_weight=pos_weight,
                                   sample_weight=None if weights is None else weights.numpy(), seed=cfg.seed)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=device), reduction="none")

        # 5. Optimiser and schedule: AdamW (no decay on bias/LayerNorm), linear warmup then decay.
        batch_size = cfg.train_batch_size()
        steps_per_epoch = math.ceil(len(train) / batch_size)
        total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
        warmup_steps = int(cfg.warmup_ratio * total_steps)
        optimizer = torch.optim.AdamW(param_groups(model, lr=cfg.lr, head_lr=cfg.head_lr, weight_decay=cfg.weight_decay))

        def lr_factor(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / (warmup_steps + 1)
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        eval_every = max(1, math.ceil(steps_per_epoch / cfg.evals_per_epoch))

        def validate() -> float:
            """PR-AUC on the validation rows with the current weights, at the training precision (never int8)."""
            model.eval()
            emb = self._embed_tokens(model.encoder, valid_tokens, cpu_precision=cfg.cpu_train_precision)
            scores = self._head_logits(emb, x_valid)
            model.train()
            return float(average_precision_score(valid.labels, scores))

        # 6. The loop: shuffle, forward, weighted loss, backward, clip, step; validate
        #    every `eval_every` steps, keep the best weights, stop on patience or budget.
        generator = torch.Generator().manual_seed(cfg.seed)
        step, best_auc, best_step, best_state, bad_evals = 0, None, 0, None, 0
        history: list[dict] = []
        if has_valid and cfg.linear_probe_init:
            # Step 0 is a candidate too: the probe alone (deep output zeroed), whose validation
            # score needs no encoding. Fine-tuning has to beat it to be kept.
            best_auc = float(average_precision_score(valid.labels, self._wide_logits(x_valid)))
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            best_state["head.out.weight"].zero_()  # the candidate is the probe alone
            best_state["head.out.bias"].zero_()
            history.append({"step": 0, "valid_pr_auc": best_auc, "loss": None})
        stopped_early = hit_budget = False
        last_eval_s, smoothed_loss, eval_total_s, samples_seen = None, None, 0.0, 0
        bar = tqdm(total=total_steps, desc="bert fine-tune", unit="step", file=sys.stderr, disable=not cfg.progress_bar)
        model.train()
        loop_started = time.monotonic()
        while step < total_steps and not (stopped_early or hit_budget):
            for index in training_batches(train_lengths, batch_size, generator, group_by_length=cfg.group_by_length):
                if step >= total_steps:
                    break
                # Time budget: stop before a step (and the validation after it) would overrun it.
                if budget_s is not None and step > 0:
                    per_step = (time.monotonic() - loop_started - eval_total_s) / step
                    eval_cost = last_eval_s if last_eval_s is not None else per_step * len(valid_tokens) / batch_size / 3
                    if time.monotonic() - started + per_step + (eval_cost if has_valid else 0.0) > budget_s:
                        hit_budget = True
                        break
                batch = pad_batch(
                    [train_tokens[i] for i in index], self.tokenizer.pad_token_id, device,
                    with_token_types=self._with_token_types,
                )
                targets = torch.from_numpy(y_train[index]).to(device)
                with autocast_for(device, cfg.cpu_train_precision):
                    logits = model(batch, x_train[index].to(device))
                per_row = loss_fn(logits.float(), targets)
                if weights is None:
                    loss = per_row.mean()
                else:
                    w = weights[index].to(device)
                    loss = (per_row * w).sum() / w.sum().clamp(min=1e-8)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                samples_seen += len(index)
                smoothed_loss = loss.item() if smoothed_loss is None else 0.9 * smoothed_loss + 0.1 * loss.item()
                bar.update(1)
                event = {"step": step, "total": total_steps, "loss": smoothed_loss, "valid_pr_auc": best_auc}

                if has_valid and (step % eval_every == 0 or step == total_steps):
                    eval_started = time.monotonic()
                    auc = validate()
                    last_eval_s = time.monotonic() - eval_started
                    eval_total_s += last_eval_s
                    history.append({"step": step, "valid_pr_auc": auc, "loss": smoothed_loss})
                    if best_auc is None or auc > best_auc:
                        best_auc, best_step, bad_evals = auc, step, 0
                        best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                    else:
                        bad_evals += 1
                    event.update(valid_pr_auc=auc, best_valid_pr_auc=best_auc)
                    stopped_early = bad_evals >= cfg.patience and step < total_steps
                bar.set_postfix(loss=f"{smoothed_loss:.4f}", valid_pr_auc="-" if best_auc is None else f"{best_auc:.4f}")
                if progress is not None and (step % 10 == 0 or "best_valid_pr_auc" in event or step == total_steps):
                    progress(event)
                if stopped_early:
                    break

        # 7. Finish: validate the last steps if the budget cut in, then restore the best weights.
        if hit_budget and has_valid and (not history or history[-1]["step"] != step):
            eval_started = time.monotonic()
            auc = validate()
            eval_total_s += time.monotonic() - eval_started
            history.append({"step": step, "valid_pr_auc": auc, "loss": smoothed_loss})
            if best_auc is None or auc > best_auc:
                best_auc, best_step, best_state = auc, step, None  # the current weights are the best
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        if cfg.use_lora:
            model.encoder = model.encoder.merge_and_unload()  # a plain encoder again: save/quantise as usual
        model.eval()
        self._quantized_encoder = None
        train_seconds = time.monotonic() - started
        self.fit_report = FitReport(
            train_seconds=train_seconds,
            n_train=len(train),
            n_valid=n_valid_given,
            best_valid_pr_auc=best_auc,
            epochs_run=step / steps_per_epoch,
            stopped_early=stopped_early,
            hit_time_budget=hit_budget,
            extra={
                "device": device.type,
                "steps": step,
                "best_step": best_step,
                "pos_weight": pos_weight,
                # Training throughput only: validation passes are excluded.
                "samples_per_s": samples_seen / max(time.monotonic() - loop_started - eval_total_s, 1e-9),
                "validation_seconds": eval_total_s,
                "n_valid_used": len(valid_tokens),
                "history": history,
                "source_model_path": cfg.model_path,
            },
        )
        return self.fit_report

    # --- inference -----------------------------------------------------------------------
    def encode(self, texts: list[str], *, precision: str | None = None, sort_by_length: bool = True) -> np.ndarray:
        """Encoder output per text, float32 [n, hidden], in the order given.

        Texts are run in batches sorted by token length; on CPU the precision is
        `config.resolved_cpu_inference()` (bf16 where the CPU has it natively, else int8 dynamic
        quantisation), or `precision` ("int8" / "bf16" / "fp32") for this call, e.g. an fp32
        reference to measure drift against.
        """
        model = self._require_model()
        self.config.apply_threads()
        texts = list(texts)
        encoder, cpu_precision = self._inference_encoder(precision)
        out = np.empty((len(texts), model.encoder.config.hidden_size), dtype=np.float32)
        # Chunks bound the memory of token lists (Python ints) whatever the customer count;
        # sorting within a chunk of thousands removes nearly all padding anyway.
        for start in range(0, len(texts), ENCODE_CHUNK):
            tokens = self._tokenize(texts[start : start + ENCODE_CHUNK])
            out[start : start + len(tokens)] = self._embed_tokens(
                encoder, tokens, cpu_precision=cpu_precision, sort=sort_by_length
            )
        return out

    def predict_proba_from_embeddings(self, embeddings: np.ndarray, features: np.ndarray) -> np.ndarray:
        logits = self._head_logits(np.asarray(embeddings, dtype=np.float32), self._standardise(features))
        return 1.0 / (1.0 + np.exp(-logits))

    def predict_proba(self, rows: Rows) -> np.ndarray:
        return self.predict_proba_from_embeddings(self.encode(rows.texts), rows.features)

    def feature_contributions_from_embeddings(self, embeddings: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Occlusion through the head: logit(row) - logit(row with feature j at the train mean)."""
        x = self._standardise(features)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        base = self._head_logits(embeddings, x)
        out = np.zeros(x.shape, dtype=np.float64)
        for j in range(x.shape[1]):
            occluded = x.copy()
            occluded[:, j] = 0.0  # the train mean, standardised
            out[:, j] = base - self._head_logits(embeddings, occluded)
        return out

    def feature_contributions(self, rows: Rows) -> np.ndarray:
        return self.feature_contributions_from_embeddings(self.encode(rows.texts), rows.features)

    def text_segment_effects(
        self, rows: Rows, *, max_segments: int = 8, skip_segments: int = 0
    ) -> list[list[tuple[int, float]]]:
        """For each row, (segment index, P(churn) without that segment - P(churn) with it).

        A negative change means the segment pushes towards churn. Segments are the "\\n"
        parts of the text; `skip_segments` leading ones (profile, aggregates) are left in
        place and the next `max_segments` are occluded one at a time, all variants in one
        length-sorted encode. A segment cut off by max_length cannot matter: it gets 0.0
        without being encoded.
        """
        self._require_model()
        self.config.apply_threads()
        if len(rows) > OCCLUSION_CHUNK:  # bound memory: rows x max_segments variants at a time
            return [
                effect
                for start in range(0, len(rows), OCCLUSION_CHUNK)
                for effect in self.text_segment_effects(
                    rows.take(np.arange(start, min(start + OCCLUSION_CHUNK, len(rows)))),
                    max_segments=max_segments, skip_segments=skip_segments,
                )
            ]
        full_tokens = self._tokenize(rows.texts)
        variants, owners = [], []
        for row, text in enumerate(rows.texts):
            segments = text.split("\n")
            for i in range(skip_segments, min(len(segments), skip_segments + max_segments)):
                variants.append("\n".join(segments[:i] + segments[i + 1 :]))
                owners.append((row, i))
        variant_tokens = self._tokenize(variants)
        needed = [k for k, (row, _) in enumerate(owners) if variant_tokens[k] != full_tokens[row]]
        encoder, cpu_precision = self._inference_encoder(None)
        p_full = self.predict_proba_from_embeddings(
            self._embed_tokens(encoder, full_tokens, cpu_precision=cpu_precision), rows.features
        )
        p_variant = np.array(p_full[[row for row, _ in owners]], dtype=np.float64)
        if needed:
            emb = self._embed_tokens(encoder, [variant_tokens[k] for k in needed], cpu_precision=cpu_precision)
            p_variant[needed] = self.predict_proba_from_embeddings(emb, rows.features[[owners[k][0] for k in needed]])
        effects: list[list[tuple[int, float]]] = [[] for _ in range(len(rows))]
        for k, (row, segment) in enumerate(owners):
            effects[row].append((segment, float(p_variant[k] - p_full[row])))
        return effects

    # --- artifacts -----------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write everything needed to score again from this folder alone."""
        model = self._require_model()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with quiet_transformers():
            model.encoder.save_pretrained(folder / ENCODER_DIR)
        self.tokenizer.save_pretrained(folder / ENCODER_DIR)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}, folder / HEAD_FILE)
        meta = {
            "format": ARTIFACT_FORMAT,
            "family": self.family,
            "config": dataclasses.asdict(self.config),
            "feature_names": list(self.feature_names),
            "feature_mean": self.feature_mean.tolist(),
            "feature_std": self.feature_std.tolist(),
            "hidden_size": model.encoder.config.hidden_size,
            "fit_report": dataclasses.asdict(self.fit_report) if self.fit_report else None,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, folder: Path, *, device: str = "auto") -> "BertFamily":
        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{folder} is not a saved bert family ({META_FILE}: {exc})") from exc
        if meta.get("format") not in LOADABLE_FORMATS:
            raise ValueError(f"{folder}: unsupported bert artifact format {meta.get('format')!r}")
        saved = _config_kwargs(meta["config"], meta["format"])
        saved.update(model_path=str(folder / ENCODER_DIR), device=device, use_lora=False)  # LoRA is merged on save
        self = cls(BertConfig(**saved))
        self.tokenizer = load_tokenizer(self.config.model_path)
        self.feature_names = tuple(meta["feature_names"])
        self.feature_mean = np.asarray(meta["feature_mean"], dtype=np.float64)
        self.feature_std = np.asarray(meta["feature_std"], dtype=np.float64)
        model = FusionModel(load_encoder(self.config.model_path), len(self.feature_names), self.config.head_hidden, self.config.dropout)
        head_state = load_file(folder / HEAD_FILE)
        if "wide.weight" not in head_state:  # saved before the wide term existed: it contributes nothing
            head_state["wide.weight"] = torch.zeros_like(model.head.wide.weight)
            head_state["wide.bias"] = torch.zeros_like(model.head.wide.bias)
        model.head.load_state_dict(head_state)
        self.model = model.to(self.device).eval()
        if meta.get("fit_report"):
            self.fit_report = FitReport(**meta["fit_report"])
        return self
