"""Masked-event pretraining of the behaviour encoder on unlabelled event sequences.

BERT's masked-LM, applied to behaviour: 15% of each sequence's real events are chosen; 80% of
those become a [MASK] event (every field MASK), 10% a random event from the batch, 10% stay; the
model predicts every field of every chosen event (kind, amount bucket, gap, age, rating, ticket
state, category: one softmax per field over that field's ids). Every customer with history
before the cutoff counts, labelled or not. A held-out slice with fixed masks measures the loss
before and after, so "pretraining helped the encoder model behaviour" is measured per run.

The artifact (`encoder.safetensors` + `encoder.json`) is what `BehaviourConfig.pretrained_path`
loads; its architecture wins over the fine-tuning config's.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from mlcore.event_tokens import FIELD_SIZES, FIELDS, MASK, MAX_EVENTS, OFFSETS, PAD
from mlcore.families.behaviour import ENCODER_META, ENCODER_WEIGHTS, EventEncoder, _seed, _trim
from mlcore.threads import use_torch_threads


@dataclass(frozen=True)
class EventPretrainConfig:
    layers: int = 2
    hidden: int = 128
    heads: int = 4
    max_events: int = MAX_EVENTS
    batch_size: int = 64
    lr: float = 3e-3  # 1e-3 had learnt only the field frequencies after ~100 CPU steps on the test task
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    epochs: float = 2.0
    mask_prob: float = 0.15
    max_train_minutes: float | None = None
    eval_fraction: float = 0.1
    max_eval: int = 512
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None

    def __post_init__(self):
        if not 0 < self.mask_prob < 1:
            raise ValueError("mask_prob must be in (0, 1)")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")


@dataclass(frozen=True)
class EventPretrainReport:
    n_sequences: int
    n_train: int
    n_eval: int
    steps: int
    epochs: float
    train_seconds: float
    eval_loss_before: float
    eval_loss_after: float
    eval_loss_unigram: float  # the best a model that ignores context can do: each field's frequencies
    hit_time_budget: bool
    samples_per_s: float
    device: str

    def to_dict(self) -> dict:
        return asdict(self)


class MaskedEventModel(nn.Module):
    def __init__(self, cfg: EventPretrainConfig):
        super().__init__()
        self.encoder = EventEncoder(cfg.layers, cfg.hidden, cfg.heads, cfg.max_events)
        self.transform = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.LayerNorm(cfg.hidden))
        self.heads = nn.ModuleList(nn.Linear(cfg.hidden, FIELD_SIZES[name]) for name in FIELDS)

    def loss(self, tokens: torch.Tensor, chosen: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the fields of the chosen events (targets: original ids)."""
        states, _ = self.encoder(tokens)
        h = self.transform(states[chosen])  # only the chosen positions reach the heads
        losses = [nn.functional.cross_entropy(head(h), targets[:, j] - OFFSETS[name])
                  for j, (name, head) in enumerate(zip(FIELDS, self.heads))]
        return torch.stack(losses).mean()


def mask_events(tokens: np.ndarray, rng: np.random.Generator, mask_prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(corrupted tokens, chosen [n, L] bool, original ids of the chosen events [k, fields])."""
    real = tokens[:, :, 0] != PAD
    chosen = real & (rng.random(real.shape) < mask_prob)
    # At least one event per sequence that has any, so short histories teach too.
    none = real.any(1) & ~chosen.any(1)
    if none.any():
        last = tokens.shape[1] - 1
        chosen[np.flatnonzero(none), last] = True
    targets = tokens[chosen].copy()
    corrupted = tokens.copy()
    roll = rng.random(len(targets))
    masked = roll < 0.8
    swapped = (roll >= 0.8) & (roll < 0.9)
    rows, cols = np.nonzero(chosen)
    corrupted[rows[masked], cols[masked]] = MASK
    if swapped.any():
        pool = tokens[real]
        corrupted[rows[swapped], cols[swapped]] = pool[rng.integers(0, len(pool), swapped.sum())]
    return corrupted, chosen, targets


def _batch_loss(model: MaskedEventModel, tokens: np.ndarray, rng: np.random.Generator, mask_prob: float,
                device: torch.device) -> torch.Tensor:
    corrupted, chosen, targets = mask_events(_trim(tokens), rng, mask_prob)
    return model.loss(torch.as_tensor(corrupted, dtype=torch.long, device=device),
                      torch.as_tensor(chosen, device=device),
                      torch.as_tensor(targets, dtype=torch.long, device=device))


@torch.inference_mode()
def _eval_loss(model: MaskedEventModel, tokens: np.ndarray, cfg: EventPretrainConfig, device: torch.device) -> float:
    model.eval()
    rng = np.random.default_rng(cfg.seed + 1)  # the same masks before and after
    total, n = 0.0, 0
    for start in range(0, len(tokens), cfg.batch_size):
        batch = tokens[start: start + cfg.batch_size]
        total += float(_batch_loss(model, batch, rng, cfg.mask_prob, device)) * len(batch)
        n += len(batch)
    return total / max(n, 1)


def _unigram_loss(train_seq: np.ndarray, eval_seq: np.ndarray, cfg: EventPretrainConfig) -> float:
    """Cross-entropy on the held-out masked events of predicting each field from its training frequencies."""
    real = train_seq[train_seq[:, :, 0] != PAD]
    rng = np.random.default_rng(cfg.seed + 1)  # the masks _eval_loss draws
    total, n = 0.0, 0
    for start in range(0, len(eval_seq), cfg.batch_size):
        batch = eval_seq[start: start + cfg.batch_size]
        _, _, targets = mask_events(_trim(batch), rng, cfg.mask_prob)
        per_field = []
        for j, name in enumerate(FIELDS):
            counts = np.bincount(real[:, j].astype(np.int64) - OFFSETS[name], minlength=FIELD_SIZES[name]) + 1.0
            logp = np.log(counts / counts.sum())
            per_field.append(-logp[targets[:, j].astype(np.int64) - OFFSETS[name]].mean())
        total += float(np.mean(per_field)) * len(batch)
        n += len(batch)
    return total / max(n, 1)


def pretrain_events(sequences: np.ndarray, *, config: EventPretrainConfig | None = None, out_dir: str | Path | None = None,
                    progress=None) -> tuple[EventPretrainReport, MaskedEventModel]:
    """Masked-event pretraining on `sequences` (uint8 [n, L, fields], e.g. every customer at a cutoff).

    Writes the encoder artifact to `out_dir` (atomically; refused if it exists and is not empty)
    when given. Returns the report and the model.
    """
    cfg = config or EventPretrainConfig()
    started = time.perf_counter()
    _seed(cfg.seed)
    use_torch_threads(cfg.num_threads)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    sequences = np.asarray(sequences)[:, -cfg.max_events:]
    sequences = sequences[(sequences[:, :, 0] != PAD).any(1)]
    if len(sequences) < 20:
        raise ValueError(f"masked-event pretraining needs at least 20 customers with events; have {len(sequences)}")
    if out_dir is not None and Path(out_dir).exists() and any(Path(out_dir).iterdir()):
        raise ValueError(f"{out_dir} exists and is not empty")
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(len(sequences))
    n_eval = min(cfg.max_eval, max(1, int(len(sequences) * cfg.eval_fraction)))
    eval_seq, train_seq = sequences[perm[:n_eval]], sequences[perm[n_eval:]]
    model = MaskedEventModel(cfg).to(device)
    before = _eval_loss(model, eval_seq, cfg, device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=cfg.lr)
    budget = cfg.max_train_minutes * 60 if cfg.max_train_minutes else None
    plan = {"total": max(10, int(cfg.epochs * math.ceil(len(train_seq) / cfg.batch_size)))}
    plan["warmup"] = max(1, int(cfg.warmup_ratio * plan["total"]))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / plan["warmup"] if s < plan["warmup"] else
                                              max(0.0, (plan["total"] - s) / max(1, plan["total"] - plan["warmup"])))
    autocast = (dict(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else dict(device_type="cpu", enabled=False))
    step, samples, hit, cursor, order, t_first, t_train = 0, 0, False, 0, rng.permutation(len(train_seq)), 0.0, 0.0
    while step < plan["total"]:
        if cursor >= len(order):
            order, cursor = rng.permutation(len(train_seq)), 0
        idx = order[cursor: cursor + cfg.batch_size]
        cursor += cfg.batch_size
        t = time.perf_counter()
        model.train()
        with torch.autocast(**autocast):
            loss = _batch_loss(model, train_seq[idx], rng, cfg.mask_prob, device)
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        samples += len(idx)
        t_train += time.perf_counter() - t
        if step == 1:
            t_first = t_train
        if step == 4 and budget is not None:
            # Fit the schedule to the budget so the rate peaks and decays inside it.
            per_step = (t_train - t_first) / 3
            left = budget - (time.perf_counter() - started) - 1.0
            plan["total"] = max(step + 1, min(plan["total"], step + int(max(0.0, left) / max(per_step, 1e-6))))
            plan["warmup"] = max(1, min(plan["warmup"], int(cfg.warmup_ratio * plan["total"])))
        if progress and step % 50 == 0:
            progress({"step": step, "total": plan["total"], "loss": float(loss.detach())})
        if budget is not None and time.perf_counter() - started > budget:
            hit = True
            break
    after = _eval_loss(model, eval_seq, cfg, device)
    report = EventPretrainReport(
        n_sequences=len(sequences), n_train=len(train_seq), n_eval=len(eval_seq), steps=step,
        epochs=round(samples / max(len(train_seq), 1), 3), train_seconds=round(time.perf_counter() - started, 2),
        eval_loss_before=round(before, 5), eval_loss_after=round(after, 5),
        eval_loss_unigram=round(_unigram_loss(train_seq, eval_seq, cfg), 5), hit_time_budget=hit,
        samples_per_s=round(samples / max(t_train, 1e-9), 1), device=device.type)
    if out_dir is not None:
        save_encoder(model.encoder, Path(out_dir), report=report.to_dict(), config=asdict(cfg))
    return report, model


def save_encoder(encoder: EventEncoder, out_dir: Path, *, report: dict, config: dict) -> None:
    """encoder.safetensors + encoder.json, written to a temporary folder first and moved into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".events-encoder-", dir=out_dir.parent))
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    save_file(state, str(tmp / ENCODER_WEIGHTS))
    (tmp / ENCODER_META).write_text(json.dumps({"arch": encoder.arch, "config": config, "report": report}, indent=1))
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked above)
    os.replace(tmp, out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
