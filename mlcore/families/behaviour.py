"""`bert_events`: a small BERT over event tokens (the behaviour itself), fused with the numeric features.

A `transformers` BertModel built from a BertConfig (no downloaded weights): each event's field
tokens (mlcore.event_tokens) are embedded and summed into one position, newest last; the
mean-pooled output joins the standardised numeric features in a wide-and-deep head:

    events [n, L, fields] -> sum of field embeddings -> BertModel (2 layers, hidden 128) -> mean pool (h)
    features -> signed log1p -> (x - train mean) / train sd, clip +-5                     (d)
    logit = wide(d) + deep([h ; d])        wide starts as a logistic regression on the features

The encoder can start from masked-event pretraining (mlcore.families.event_pretrain) instead of random.
Training plans its steps from the time budget after measuring a few, so the warmup + linear
decay schedule reaches its peak and decays inside the budget, and the full validation set is
scored at least `min_evals` times per run whatever the budget; early stopping keeps the best.
"""
from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mlcore.event_tokens import MAX_EVENTS, PAD, VOCAB_SIZE
from mlcore.families.base import FitReport, ProgressCallback, Rows
from mlcore.metrics import pr_auc
from mlcore.threads import use_torch_threads

WEIGHTS_FILE = "behaviour.safetensors"
META_FILE = "behaviour.json"
ENCODER_WEIGHTS = "encoder.safetensors"
ENCODER_META = "encoder.json"
ARCH_FIELDS = ("layers", "hidden", "heads", "max_events")


@dataclass(frozen=True)
class BehaviourConfig:
    layers: int = 2
    hidden: int = 128
    heads: int = 4
    max_events: int = MAX_EVENTS  # the newest events kept per customer
    dropout: float = 0.1
    head_hidden: int = 64
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 1e-3  # peak, for encoder and head (a small model trained from scratch takes a high rate)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    epochs: float = 4.0  # the plan when no time budget binds
    evals: int = 8  # validations over the run (step 0 not counted)
    min_evals: int = 5  # never fewer, whatever the budget
    patience: int = 4  # validations without improvement before stopping
    class_weighting: bool = True
    linear_probe_init: bool = True
    max_train_minutes: float | None = None
    seed: int = 0
    device: str = "auto"  # "cpu" | "cuda"; CUDA trains and scores under bf16 autocast
    num_threads: int | None = None
    pretrained_path: str | None = None  # an event-pretraining artifact (its architecture wins)

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if not 1 <= self.max_events <= MAX_EVENTS:
            raise ValueError(f"max_events must be 1..{MAX_EVENTS}")
        if self.min_evals < 1 or self.evals < self.min_evals:
            raise ValueError("evals must be at least min_evals, and min_evals at least 1")
        if self.max_train_minutes is not None and self.max_train_minutes <= 0:
            raise ValueError("max_train_minutes must be positive")

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def bert_config(layers: int, hidden: int, heads: int, max_events: int, dropout: float = 0.1):
    from transformers import BertConfig

    return BertConfig(vocab_size=VOCAB_SIZE, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=4 * hidden, max_position_embeddings=max_events, type_vocab_size=1,
                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)


class EventEncoder(nn.Module):
    """Field embeddings summed per event -> BertModel -> per-event states; `pooled` averages real events."""

    def __init__(self, layers: int, hidden: int, heads: int, max_events: int, dropout: float = 0.1):
        super().__init__()
        from transformers import BertModel

        self.arch = {"layers": layers, "hidden": hidden, "heads": heads, "max_events": max_events}
        self.embed = nn.Embedding(VOCAB_SIZE, hidden, padding_idx=PAD)
        self.bert = BertModel(bert_config(layers, hidden, heads, max_events, dropout), add_pooling_layer=False)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = tokens[:, :, 0] != PAD
        x = self.embed(tokens).sum(dim=2)
        # Right-aligned sequences: position ids count from the end, so the newest event always sits
        # at the same position whatever the batch's length.
        length = tokens.shape[1]
        positions = torch.arange(self.arch["max_events"] - length, self.arch["max_events"], device=tokens.device)
        out = self.bert(inputs_embeds=x, attention_mask=mask.long(), position_ids=positions[None].expand(len(tokens), -1))
        return out.last_hidden_state, mask

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        states, mask = self(tokens)
        m = mask.unsqueeze(-1).to(states.dtype)
        return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


class BehaviourModel(nn.Module):
    def __init__(self, cfg: BehaviourConfig, n_features: int):
        super().__init__()
        self.encoder = EventEncoder(cfg.layers, cfg.hidden, cfg.heads, cfg.max_events, cfg.dropout)
        self.wide = nn.Linear(n_features, 1)
        self.deep = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden + n_features, cfg.head_hidden), nn.GELU(),
                                  nn.Dropout(cfg.dropout), nn.Linear(cfg.head_hidden, 1))

    def head(self, pooled: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (self.wide(x) + self.deep(torch.cat([pooled, x], dim=1))).squeeze(1)

    def forward(self, tokens: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.pooled(tokens), x)


def _compress(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _trim(tokens: np.ndarray) -> np.ndarray:
    """Drop leading columns that are padding for every row of the batch (sequences are right-aligned)."""
    real = (tokens[:, :, 0] != PAD).any(axis=0)
    first = int(np.argmax(real)) if real.any() else tokens.shape[1] - 1
    return tokens[:, first:]


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_encoder_state(path: str | Path) -> tuple[dict, dict]:
    """(architecture, encoder state dict) from an event-pretraining artifact folder."""
    path = Path(path)
    meta = json.loads((path / ENCODER_META).read_text())
    return meta["arch"], load_file(str(path / ENCODER_WEIGHTS))


class BehaviourBertFamily:
    family: ClassVar[str] = "bert_events"
    needs_events: ClassVar[bool] = True  # scoring must put event tokens on the rows

    def __init__(self, config: BehaviourConfig | None = None):
        config = config or BehaviourConfig()
        self._pretrained_state = None
        if config.pretrained_path:
            arch, state = load_encoder_state(config.pretrained_path)
            config = BehaviourConfig(**{**asdict(config), **{k: arch[k] for k in ARCH_FIELDS}})
            self._pretrained_state = state
        self.config = config
        self.model: BehaviourModel | None = None
        self.feature_names: tuple[str, ...] = ()
        self.mean = self.sd = None

    # --- inputs -------------------------------------------------------------------------
    def _x(self, features: np.ndarray) -> np.ndarray:
        z = (_compress(np.asarray(features, dtype=np.float64)) - self.mean) / self.sd
        return np.clip(np.nan_to_num(z), -5, 5).astype(np.float32)

    def _tokens(self, rows: Rows) -> np.ndarray:
        if rows.events is None:
            raise ValueError("bert_events needs event tokens in rows.events (mlcore.event_tokens)")
        return rows.events[:, -self.config.max_events:]

    # --- training -----------------------------------------------------------------------
    def fit(self, train: Rows, valid: Rows, *, progress: ProgressCallback | None = None) -> FitReport:
        cfg = self.config
        started = time.perf_counter()
        budget = cfg.max_train_minutes * 60 if cfg.max_train_minutes else None
        # (1) seeds, threads, device
        _seed(cfg.seed)
        use_torch_threads(cfg.num_threads)
        device = cfg.resolved_device()
        autocast = (dict(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda"
                    else dict(device_type="cpu", enabled=False))
        # (2) feature statistics from train, model, optional pretrained encoder
        y = np.asarray(train.labels, dtype=np.float32)
        if y.min() == y.max():
            raise ValueError("training rows need both churners and stayers")
        x_log = _compress(train.features.astype(np.float64))
        self.mean, sd = x_log.mean(0), x_log.std(0)
        self.sd = np.where(sd > 1e-9, sd, 1.0)
        self.feature_names = tuple(train.feature_names)
        x_train, tok_train = self._x(train.features), self._tokens(train)
        x_valid, tok_valid = self._x(valid.features), self._tokens(valid)
        weights = np.ones(len(train), np.float32) if train.sample_weight is None else train.sample_weight.astype(np.float32)
        n_pos = float((y * weights).sum())
        pos_weight = float(((1 - y) * weights).sum() / max(n_pos, 1e-9)) if cfg.class_weighting else 1.0
        model = BehaviourModel(cfg, x_train.shape[1])
        if self._pretrained_state is not None:
            model.encoder.load_state_dict(self._pretrained_state)
        if cfg.linear_probe_init:
            from sklearn.linear_model import LogisticRegression

            w = np.where(y == 1, pos_weight, 1.0) * weights
            probe = LogisticRegression(C=1.0, max_iter=2000, random_state=cfg.seed).fit(x_train, y, sample_weight=w)
            with torch.no_grad():
                model.wide.weight.copy_(torch.as_tensor(probe.coef_, dtype=torch.float32))
                model.wide.bias.copy_(torch.as_tensor(probe.intercept_, dtype=torch.float32))
        model.to(device)
        self.model = model
        # (3) AdamW without decay on biases, LayerNorm and embeddings; warmup + linear decay
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            (no_decay if p.ndim < 2 or "embed" in name or "LayerNorm" in name else decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        plan = {"total": max(cfg.evals, int(cfg.epochs * steps_per_epoch))}
        plan["warmup"] = max(1, int(cfg.warmup_ratio * plan["total"]))

        def lr_at(step: int) -> float:
            if step < plan["warmup"]:
                return (step + 1) / plan["warmup"]
            return max(0.0, (plan["total"] - step) / max(1, plan["total"] - plan["warmup"]))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        loss_fn = nn.BCEWithLogitsLoss(reduction="none", pos_weight=torch.tensor(pos_weight, device=device))
        gen = np.random.default_rng(cfg.seed)

        def validate() -> float:
            return pr_auc(valid.labels, self._predict_logits(tok_valid, x_valid), valid.sample_weight)

        # (4) step 0: the probe alone is the first candidate; timing this pass prices a validation
        t0 = time.perf_counter()
        best = validate()
        eval_seconds = time.perf_counter() - t0
        history = [{"step": 0, "valid_pr_auc": best}]
        best_state, best_step = copy.deepcopy(model.state_dict()), 0
        step, bad, stopped_early, hit_budget, samples, train_time = 0, 0, False, False, 0, 0.0
        eval_steps: set[int] | None = None
        order, cursor = gen.permutation(len(train)), 0
        timing_steps, first_step = 4, 0.0
        while step < plan["total"]:
            # (5) a shuffled batch -> forward -> weighted, class-weighted BCE -> backward -> clip -> step
            if cursor >= len(order):
                order, cursor = gen.permutation(len(train)), 0
            idx = order[cursor: cursor + cfg.batch_size]
            cursor += cfg.batch_size
            t_step = time.perf_counter()
            model.train()
            tok = torch.as_tensor(_trim(tok_train[idx]), dtype=torch.long, device=device)
            xb = torch.as_tensor(x_train[idx], device=device)
            yb = torch.as_tensor(y[idx], device=device)
            wb = torch.as_tensor(weights[idx], device=device)
            with torch.autocast(**autocast):
                logits = model(tok, xb)
            loss = (loss_fn(logits.float(), yb) * wb).sum() / wb.sum().clamp(min=1e-9)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            samples += len(idx)
            train_time += time.perf_counter() - t_step
            if step == 1:
                first_step = train_time  # pays one-off warm-up costs; not a fair price for the rest
            if eval_steps is None and (step >= timing_steps or step >= plan["total"]):
                # (6) plan the run from measured costs: the steps that fit the budget next to the
                # validations, never fewer than min_evals validations; warmup a fraction of the real total
                per_step = (train_time - first_step) / (step - 1) if step > 1 else train_time
                total = plan["total"]
                n_evals = cfg.evals
                if budget is not None:
                    left = budget - (time.perf_counter() - started) - 1.0
                    if left < 2 * cfg.evals * eval_seconds:
                        n_evals = cfg.min_evals
                    total = min(total, step + int(max(0.0, left - n_evals * eval_seconds) / max(per_step, 1e-6)))
                total = max(total, step + cfg.min_evals)
                n_evals = min(n_evals, total - step)
                plan["total"] = total
                plan["warmup"] = max(1, min(plan["warmup"], int(cfg.warmup_ratio * total)))
                eval_steps = set(np.linspace(step, total, n_evals + 1)[1:].round().astype(int).tolist())
            over = budget is not None and time.perf_counter() - started > budget
            validations = len(history) - 1
            if eval_steps is not None and (step in eval_steps or (over and validations < cfg.min_evals)):
                # (7) validate on the full validation rows, keep the best weights, stop on patience
                score = validate()
                history.append({"step": step, "valid_pr_auc": score, "lr": sched.get_last_lr()[0],
                                "loss": float(loss.detach())})
                validations += 1
                if progress:
                    progress({"step": step, "total": plan["total"], "loss": float(loss.detach()), "valid_pr_auc": score})
                if np.isfinite(score) and score > best + 1e-6:
                    best, best_state, best_step, bad = score, copy.deepcopy(model.state_dict()), step, 0
                else:
                    bad += 1
                    if bad >= cfg.patience and validations >= cfg.min_evals:
                        stopped_early = True
                        break
            if over and validations >= cfg.min_evals:
                hit_budget = True
                break
        # (8) the best weights back
        model.load_state_dict(best_state)
        model.eval()
        return FitReport(
            train_seconds=time.perf_counter() - started, n_train=len(train), n_valid=len(valid),
            best_valid_pr_auc=best, epochs_run=samples / len(train), stopped_early=stopped_early,
            hit_time_budget=hit_budget,
            extra={"steps": step, "best_step": best_step, "planned_steps": plan["total"], "warmup_steps": plan["warmup"],
                   "validations": len(history) - 1, "pos_weight": pos_weight,
                   "device": device.type, "pretrained": self._pretrained_state is not None,
                   "train_samples_per_s": round(samples / max(train_time, 1e-9), 1),
                   "valid_seconds": round(eval_seconds, 2), "history": history},
        )

    # --- inference ----------------------------------------------------------------------
    @torch.inference_mode()
    def _run(self, tokens: np.ndarray, x: np.ndarray, *, pooled_only: bool = False) -> np.ndarray:
        """Logits (or pooled embeddings), in length-sorted batches scattered back to row order."""
        model, cfg = self.model, self.config
        use_torch_threads(cfg.num_threads)
        model.eval()
        device = next(model.parameters()).device
        lengths = (tokens[:, :, 0] != PAD).sum(1)
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(tokens), cfg.hidden) if pooled_only else len(tokens), dtype=np.float32)
        autocast = (dict(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda"
                    else dict(device_type="cpu", enabled=False))
        for start in range(0, len(order), cfg.eval_batch_size):
            idx = order[start: start + cfg.eval_batch_size]
            tok = torch.as_tensor(_trim(tokens[idx]), dtype=torch.long, device=device)
            with torch.autocast(**autocast):
                pooled = model.encoder.pooled(tok)
                result = pooled if pooled_only else model.head(pooled, torch.as_tensor(x[idx], device=device))
            out[idx] = result.float().cpu().numpy()
        return out

    def _predict_logits(self, tokens: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self._run(tokens, x).astype(np.float64)

    def predict_proba(self, rows: Rows) -> np.ndarray:
        logits = self._predict_logits(self._tokens(rows), self._x(rows.features))
        return 1.0 / (1.0 + np.exp(-logits))

    def embed(self, rows: Rows) -> np.ndarray:
        """Mean-pooled encoder output per row, float32 [n, hidden] (the stacked family's input)."""
        return self._run(self._tokens(rows), np.zeros((len(rows), 0), np.float32), pooled_only=True)

    @torch.inference_mode()
    def _head_with_occlusion(self, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        """One encoder pass; the head's logits, and occlusion through the head: logit(row) - logit(row
        with feature j at the train mean), log-odds [n, d]."""
        self.model.eval()
        device = next(self.model.parameters()).device
        pooled = torch.as_tensor(self.embed(rows), device=device)
        x = torch.as_tensor(self._x(rows.features), device=device)
        head = self.model.head
        base = head(pooled, x)
        out = np.zeros(tuple(x.shape), dtype=np.float64)
        for j in range(x.shape[1]):
            x0 = x.clone()
            x0[:, j] = 0.0  # the train mean, standardised
            out[:, j] = (base - head(pooled, x0)).float().cpu().numpy()
        return base.float().cpu().numpy().astype(np.float64), out

    def feature_contributions(self, rows: Rows) -> np.ndarray:
        return self._head_with_occlusion(rows)[1]

    def predict_with_contributions(self, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        """`predict_proba` and `feature_contributions` from one encoder pass (scoring needs both)."""
        logits, contributions = self._head_with_occlusion(rows)
        return 1.0 / (1.0 + np.exp(-logits)), contributions

    # --- artifact -----------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))
        config = asdict(self.config) | {"pretrained_path": None}
        (folder / META_FILE).write_text(json.dumps({
            "family": self.family, "format": 1, "config": config, "feature_names": list(self.feature_names),
            "mean": self.mean.tolist(), "sd": self.sd.tolist(),
        }, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "BehaviourBertFamily":
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text())
        known = {f.name for f in fields(BehaviourConfig)}
        obj = cls(BehaviourConfig(**{k: v for k, v in meta["config"].items() if k in known}))
        obj.feature_names = tuple(meta["feature_names"])
        obj.mean, obj.sd = np.array(meta["mean"]), np.array(meta["sd"])
        obj.model = BehaviourModel(obj.config, len(obj.feature_names))
        obj.model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        obj.model.to(obj.config.resolved_device()).eval()
        return obj
