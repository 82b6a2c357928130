"""Continued masked-LM pretraining of the encoder on a shop's unlabelled customer texts.

Domain adaptation before fine-tuning: the encoder sees how this shop's customer texts read
(product names, ticket phrasing, the text layout) without needing any churn labels. The
output folder is a complete checkpoint, usable as BERT_MODEL_PATH / BertConfig.model_path.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mlcore.families.base import ProgressCallback
from mlcore.families.bert.config import check_checkpoint, load_tokenizer, quiet_transformers
from mlcore.families.bert.model import autocast_for, pad_batch
from mlcore.threads import use_torch_threads

log = logging.getLogger(__name__)
REPORT_FILE = "pretrain_report.json"
MIN_TEXTS = 4


@dataclass(frozen=True)
class PretrainConfig:
    """Continued MLM pretraining settings (BERT's recipe, shortened for a shop's corpus)."""

    max_length: int = 128
    batch_size: int | None = None  # CPU 16 / CUDA 64
    epochs: float = 1.0
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    grad_clip: float = 1.0
    mlm_probability: float = 0.15
    max_train_minutes: float | None = None
    eval_fraction: float = 0.1  # held-out texts whose MLM loss is reported before and after
    max_eval_texts: int = 256
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length must be within 8..512, got {self.max_length}")
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"mlm_probability must be within (0, 1), got {self.mlm_probability}")
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be within (0, 1), got {self.eval_fraction}")
        for name in ("batch_size", "num_threads", "max_train_minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive when set, got {value}")
        if self.epochs <= 0 or self.lr <= 0 or self.max_eval_texts < 1:
            raise ValueError("epochs, lr and max_eval_texts must be positive")
        if self.device not in {"auto", "cpu", "cuda"}:
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")


@dataclass(frozen=True)
class PretrainReport:
    out_dir: str
    source_model_path: str
    n_texts: int
    n_eval: int
    steps: int
    epochs_run: float
    train_seconds: float
    eval_loss_before: float
    eval_loss_after: float
    hit_time_budget: bool
    mlm_head_initialised_fresh: bool  # the source had no MLM head (e.g. MiniLM): a new one was trained
    samples_per_s: float = 0.0  # training loop only


def read_texts(path: Path | str) -> list[str]:
    """Texts from a file: JSONL (one JSON string, or an object with "text", per line) or plain
    text (one text per line). JSONL keeps the "\n" segment separators of customer texts."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read texts from {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() not in {".jsonl", ".json", ".ndjson"}:
        return [line for line in lines if line.strip()]
    texts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise ValueError(f'{path}:{number}: expected a JSON string or an object with a "text" string')
        texts.append(text)
    return texts


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    special_ids: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    probability: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: pick `probability` of real tokens; of those 80% [MASK], 10% random, 10% kept.

    Returns (inputs, labels) with labels -100 where nothing is predicted.
    """
    candidates = attention_mask.bool() & ~torch.isin(input_ids, special_ids)
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & candidates
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    inputs = input_ids.clone()
    roll = torch.rand(input_ids.shape, generator=generator)
    inputs[chosen & (roll < 0.8)] = mask_id
    random_slots = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[random_slots] = torch.randint(vocab_size, input_ids.shape, generator=generator)[random_slots]
    return inputs, labels


def _load_mlm_model(model_path: str):
    from transformers import AutoModelForMaskedLM

    with quiet_transformers():
        model, info = AutoModelForMaskedLM.from_pretrained(model_path, local_files_only=True, output_loading_info=True)
    # Sentence-embedding checkpoints such as all-MiniLM-L6-v2 ship without the MLM head.
    fresh = sorted(key for key in info["missing_keys"] if not key.startswith(model.base_model_prefix + "."))
    return model, fresh


def masked_logits(model, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Vocabulary logits at the masked positions only, with their targets.

    The vocabulary projection (hidden x 30,522) costs about as much as MiniLM's six layers
    per token; running it on the 15% masked tokens only roughly halves a training step.
    """
    chosen = labels != -100
    if hasattr(model, "cls"):  # BertForMaskedLM: encoder, then the MLM head on chosen tokens
        hidden = model.base_model(**batch).last_hidden_state
        return model.cls(hidden[chosen]), labels[chosen]
    return model(**batch).logits[chosen], labels[chosen]


def pretrain_mlm(
    texts: Sequence[str],
    *,
    model_path: str,
    out_dir: Path | str,
    config: PretrainConfig = PretrainConfig(),
    progress: ProgressCallback | None = None,
) -> PretrainReport:
    """Continue masked-LM training of `model_path` on `texts` and write a checkpoint to `out_dir`."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} already exists and is not empty; choose a new output folder")
    texts = [t for t in texts if t and t.strip()]
    if len(texts) < MIN_TEXTS:
        raise ValueError(f"masked-LM pretraining needs at least {MIN_TEXTS} non-empty texts, got {len(texts)}")
    check_checkpoint(model_path)
    started = time.monotonic()
    budget_s = config.max_train_minutes * 60 if config.max_train_minutes else None

    # 1. Reproducibility and hardware.
    torch.manual_seed(config.seed)
    if config.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(config.device)
    use_torch_threads(config.num_threads)

    # 2. Model: encoder + MLM head (fresh when the checkpoint has none - we say so).
    tokenizer = load_tokenizer(model_path)
    model, fresh_keys = _load_mlm_model(model_path)
    if fresh_keys:
        log.warning("%s has no masked-LM head; initialising one fresh (%s)", model_path, ", ".join(fresh_keys))
    model.to(device).train()

    # 3. Data: hold out a fixed slice for before/after loss; the eval masks are drawn once.
    order = np.random.default_rng(config.seed).permutation(len(texts))
    n_eval = min(config.max_eval_texts, max(1, int(round(config.eval_fraction * len(texts)))))
    eval_texts = [texts[i] for i in order[:n_eval]]
    train_texts = [texts[i] for i in order[n_eval:]]
    tokenize = lambda items: tokenizer(items, truncation=True, max_length=config.max_length)["input_ids"]  # noqa: E731
    train_tokens, eval_tokens = tokenize(train_texts), tokenize(eval_texts)
    with_types = "token_type_ids" in tokenizer.model_input_names
    mask_args = dict(
        special_ids=torch.tensor(sorted(tokenizer.all_special_ids)),
        mask_id=tokenizer.mask_token_id,
        vocab_size=model.config.vocab_size,
        probability=config.mlm_probability,
    )
    batch_size = config.batch_size or (64 if device.type == "cuda" else 16)
    eval_generator = torch.Generator().manual_seed(config.seed + 1)
    eval_batches = []
    for start in range(0, len(eval_tokens), batch_size):
        batch = pad_batch(eval_tokens[start : start + batch_size], tokenizer.pad_token_id, torch.device("cpu"), with_token_types=with_types)
        inputs, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], generator=eval_generator, **mask_args)
        eval_batches.append(({**batch, "input_ids": inputs}, labels))

    def eval_loss() -> float:
        """Mean cross-entropy over every masked held-out token (same masks each time)."""
        model.eval()
        total, count = 0.0, 0
        with torch.inference_mode(), autocast_for(device):
            for batch, labels in eval_batches:
                logits, targets = masked_logits(model, {k: v.to(device) for k, v in batch.items()}, labels.to(device))
                total += torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum").item()
                count += len(targets)
        model.train()
        return total / max(count, 1)

    eval_started = time.monotonic()
    loss_before = eval_loss()
    eval_seconds = time.monotonic() - eval_started  # the final measurement will cost the same

    # 4. Optimiser and schedule: AdamW (no decay on bias/LayerNorm), warmup then linear decay.
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr
    )
    steps_per_epoch = max(1, math.ceil(len(train_tokens) / batch_size))
    total_steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    warmup = int(config.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (total_steps - s) / max(1, total_steps - warmup)),
    )

    # 5. The loop: shuffle, mask afresh, forward, backward, clip, step; stop on the budget.
    generator = torch.Generator().manual_seed(config.seed)
    step, hit_budget, smoothed, samples_seen = 0, False, None, 0
    bar = tqdm(total=total_steps, desc="mlm pretrain", unit="step", file=sys.stderr, disable=not config.progress_bar)
    loop_started = time.monotonic()
    while step < total_steps and not hit_budget and train_tokens:
        perm = torch.randperm(len(train_tokens), generator=generator).tolist()
        for start in range(0, len(perm), batch_size):
            if step >= total_steps:
                break
            if budget_s is not None and step > 0:
                per_step = (time.monotonic() - loop_started) / step
                if time.monotonic() - started + per_step + eval_seconds > budget_s:
                    hit_budget = True
                    break
            batch = pad_batch(
                [train_tokens[i] for i in perm[start : start + batch_size]], tokenizer.pad_token_id,
                torch.device("cpu"), with_token_types=with_types,
            )
            inputs, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], generator=generator, **mask_args)
            if not (labels != -100).any():
                continue  # nothing was masked in this (tiny) batch
            batch = {k: v.to(device) for k, v in {**batch, "input_ids": inputs}.items()}
            with autocast_for(device):
                logits, targets = masked_logits(model, batch, labels.to(device))
                loss = torch.nn.functional.cross_entropy(logits.float(), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            samples_seen += len(inputs)
            smoothed = loss.item() if smoothed is None else 0.9 * smoothed + 0.1 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{smoothed:.3f}")
            if progress is not None and (step % 10 == 0 or step == total_steps):
                progress({"step": step, "total": total_steps, "loss": smoothed})
    bar.close()
    loop_seconds = time.monotonic() - loop_started

    # 6. Measure again on the same masked held-out tokens, then write the checkpoint atomically.
    loss_after = eval_loss()
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    with quiet_transformers():
        model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    report = PretrainReport(
        out_dir=str(out_dir),
        source_model_path=str(model_path),
        n_texts=len(texts),
        n_eval=len(eval_texts),
        steps=step,
        epochs_run=step / steps_per_epoch,
        train_seconds=time.monotonic() - started,
        eval_loss_before=loss_before,
        eval_loss_after=loss_after,
        hit_time_budget=hit_budget,
        mlm_head_initialised_fresh=bool(fresh_keys),
        samples_per_s=samples_seen / max(loop_seconds, 1e-9),
    )
    (partial / REPORT_FILE).write_text(json.dumps({**dataclasses.asdict(report), "config": dataclasses.asdict(config)}, indent=2))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked above)
    os.replace(partial, out_dir)
    return report
