"""`stacked`: LightGBM on the numeric features + the behaviour BERT's cross-fitted score + behaviour embeddings.

    train rows, K folds grouped by customer (every row of a customer in one fold)
    fold k: behaviour BERT fine-tuned on the other folds -> scores fold k   (out-of-fold: never its own rows)
    embeddings: the masked-event pretrained encoder (label-free), mean-pooled, PCA to a few dims
    LightGBM on [numeric features ; behaviour logit ; embedding dims], early-stopped on validation
    new rows: behaviour logit = mean of the K fold models (none of them saw a new row)

Why the embedding comes from the pretrained encoder and not from the fold models: K fine-tuned
encoders live in K unaligned spaces, so an out-of-fold embedding in training would not match
what scoring feeds the trees. The pretrained encoder never saw a label, so its embedding cannot
leak one and needs no cross-fitting. Reasons come from LightGBM's SHAP values on the numeric
features (the behaviour columns explain no sentence and are left out).
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mlcore.event_tokens import PAD, unlabelled_sequences
from mlcore.families.base import FitReport, ProgressCallback, Rows
from mlcore.families.behaviour import (
    BehaviourBertFamily, BehaviourConfig, EventEncoder, _trim, load_encoder_state,
)
from mlcore.families.event_pretrain import EventPretrainConfig, pretrain_events
from mlcore.families.gbm import LightgbmFamily
from mlcore.threads import use_torch_threads

META_FILE = "stacked.json"
ENCODER_FILE = "stacked_encoder.safetensors"


@dataclass(frozen=True)
class StackedConfig:
    folds: int = 3
    embedding_dims: int = 8
    max_train_minutes: float | None = None  # the whole family: pretraining (if needed) + folds + trees
    pretrain_share: float = 0.25  # of the budget, when no pretrained encoder is given
    seed: int = 0
    events: dict | None = None  # BehaviourConfig overrides for the fold models (and the pretraining's shape)

    def __post_init__(self):
        if self.folds < 2:
            raise ValueError("stacked needs at least 2 folds")


def customer_folds(customer_ids: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Fold index per row, grouped by customer: all rows of one customer share a fold."""
    ids = np.unique(customer_ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    fold_of = dict(zip(ids[order].tolist(), (np.arange(len(ids)) % folds).tolist()))
    return np.array([fold_of[c] for c in customer_ids.tolist()], dtype=np.int64)


class StackedFamily:
    family: ClassVar[str] = "stacked"
    needs_events: ClassVar[bool] = True

    def __init__(self, config: StackedConfig | None = None, *,
                 behaviour_factory: Callable[[BehaviourConfig], object] | None = None):
        self.config = config or StackedConfig()
        self.behaviour_factory = behaviour_factory or BehaviourBertFamily
        self.fold_models: list = []
        self.encoder: EventEncoder | None = None
        self.pca_mean = self.pca_components = None
        self.gbm: LightgbmFamily | None = None
        self.feature_names: tuple[str, ...] = ()
        # What cross-fitting did, for the report and the tests: the fold of each training row's
        # out-of-fold score and the customers each fold model was trained on.
        self.oof_fold: np.ndarray | None = None
        self.fold_customers: list[set[int]] = []

    # --- the behaviour columns ------------------------------------------------------------
    def _embed(self, rows: Rows) -> np.ndarray:
        tokens = rows.events[:, -self.encoder.arch["max_events"]:]
        lengths = (tokens[:, :, 0] != PAD).sum(1)
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(rows), self.encoder.arch["hidden"]), np.float32)
        device = next(self.encoder.parameters()).device
        use_torch_threads()
        self.encoder.eval()
        with torch.inference_mode():
            for start in range(0, len(order), 256):
                idx = order[start: start + 256]
                tok = torch.as_tensor(_trim(tokens[idx]), dtype=torch.long, device=device)
                out[idx] = self.encoder.pooled(tok).float().cpu().numpy()
        return (out - self.pca_mean) @ self.pca_components.T

    def _behaviour_logit(self, rows: Rows) -> np.ndarray:
        logits = []
        for model in self.fold_models:
            p = np.clip(model.predict_proba(rows), 1e-7, 1 - 1e-7)
            logits.append(np.log(p / (1 - p)))
        return np.mean(logits, axis=0)

    def _stack(self, rows: Rows, behaviour_logit: np.ndarray) -> Rows:
        extra = np.c_[behaviour_logit, self._embed(rows)].astype(np.float32)
        names = (*rows.feature_names, "behaviour_logit", *(f"behaviour_emb_{i}" for i in range(extra.shape[1] - 1)))
        return replace(rows, features=np.c_[rows.features, extra], feature_names=names)

    # --- training -------------------------------------------------------------------------
    def fit(self, train: Rows, valid: Rows, *, progress: ProgressCallback | None = None) -> FitReport:
        cfg = self.config
        started = time.perf_counter()
        if train.events is None or valid.events is None:
            raise ValueError("stacked needs event tokens in rows.events (mlcore.event_tokens)")
        events_cfg = dict(cfg.events or {})
        given = events_cfg.pop("pretrained_path", None)
        events_cfg.pop("pretrained_name", None)
        budget = cfg.max_train_minutes
        # (1) the label-free encoder: the registered pretraining, else masked-event pretraining now
        pretrain_report, scratch = None, None
        if not given:
            shape = {k: events_cfg[k] for k in ("layers", "hidden", "heads", "max_events", "batch_size") if k in events_cfg}
            scratch = tempfile.TemporaryDirectory(prefix="stacked-mlm-")
            given = str(Path(scratch.name) / "enc")
            report, _ = pretrain_events(unlabelled_sequences(train.events, valid.events), out_dir=given, config=EventPretrainConfig(
                max_train_minutes=budget * cfg.pretrain_share if budget else None, seed=cfg.seed, **shape))
            pretrain_report = report.to_dict()
        arch, state = load_encoder_state(given)
        self.encoder = EventEncoder(arch["layers"], arch["hidden"], arch["heads"], arch["max_events"])
        self.encoder.load_state_dict(state)
        # PCA of the pooled embeddings on the training rows (a few dims: trees split on few columns well)
        self.pca_mean = np.zeros(arch["hidden"], np.float32)
        self.pca_components = np.eye(arch["hidden"], dtype=np.float32)
        raw = self._embed(train)
        self.pca_mean = raw.mean(0)
        _, _, vt = np.linalg.svd(raw - self.pca_mean, full_matrices=False)
        self.pca_components = vt[: cfg.embedding_dims].astype(np.float32)
        # (2) cross-fitting: fold k's model never trains on a row (or a customer) of fold k
        fold = customer_folds(train.customer_ids, cfg.folds, cfg.seed)
        left = (budget * 60 - (time.perf_counter() - started)) if budget else None
        per_fold = max(0.05, 0.85 * left / 60 / cfg.folds) if left is not None else None
        oof = np.zeros(len(train))
        self.fold_models, self.fold_customers = [], []
        reports = []
        for k in range(cfg.folds):
            inside = fold != k
            model = self.behaviour_factory(BehaviourConfig(max_train_minutes=per_fold, seed=cfg.seed + k,
                                                           pretrained_path=given, **events_cfg))
            reports.append(model.fit(train.take(inside), valid))
            p = np.clip(model.predict_proba(train.take(~inside)), 1e-7, 1 - 1e-7)
            oof[~inside] = np.log(p / (1 - p))
            self.fold_models.append(model)
            self.fold_customers.append(set(np.unique(train.customer_ids[inside]).tolist()))
        self.oof_fold = fold
        if scratch is not None:
            scratch.cleanup()  # the fold models and the encoder hold their weights in memory
        # (3) LightGBM on the numeric features + behaviour columns, early-stopped on validation
        self.feature_names = tuple(train.feature_names)
        self.gbm = LightgbmFamily(seed=cfg.seed)
        stacked_train = self._stack(train, oof)
        stacked_valid = self._stack(valid, self._behaviour_logit(valid))
        gbm_report = self.gbm.fit(stacked_train, stacked_valid, progress=progress)
        return FitReport(
            train_seconds=time.perf_counter() - started, n_train=len(train), n_valid=len(valid),
            best_valid_pr_auc=gbm_report.best_valid_pr_auc, epochs_run=gbm_report.epochs_run,
            hit_time_budget=any(r.hit_time_budget for r in reports),
            extra={"folds": cfg.folds, "best_iteration": gbm_report.extra.get("best_iteration"),
                   "fold_best_steps": [r.extra.get("best_step") for r in reports],
                   "fold_validations": [r.extra.get("validations") for r in reports],
                   "fold_valid_pr_auc": [r.best_valid_pr_auc for r in reports],
                   "pretraining": pretrain_report, "pretrained_given": pretrain_report is None},
        )

    # --- inference ------------------------------------------------------------------------
    def _stacked_rows(self, rows: Rows) -> Rows:
        return self._stack(rows, self._behaviour_logit(rows))

    def predict_proba(self, rows: Rows) -> np.ndarray:
        return self.gbm.predict_proba(self._stacked_rows(rows))

    def feature_contributions(self, rows: Rows) -> np.ndarray:
        """LightGBM SHAP values (log-odds) of the numeric features; the behaviour columns are left out."""
        return self.predict_with_contributions(rows)[1]

    def predict_with_contributions(self, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        """`predict_proba` and `feature_contributions` from one pass of the behaviour encoders (four of
        them: the fold models and the pretrained one), which are most of the cost of scoring."""
        stacked = self._stacked_rows(rows)
        return (self.gbm.predict_proba(stacked),
                self.gbm.feature_contributions(stacked)[:, : len(self.feature_names)])

    # --- artifact -------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.gbm.save(folder)
        for k, model in enumerate(self.fold_models):
            model.save(folder / f"fold_{k}")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.encoder.state_dict().items()},
                  str(folder / ENCODER_FILE))
        (folder / META_FILE).write_text(json.dumps({
            "family": self.family, "format": 1, "config": asdict(self.config) | {"events": None},
            "feature_names": list(self.feature_names), "arch": self.encoder.arch,
            "pca_mean": self.pca_mean.tolist(), "pca_components": self.pca_components.tolist(),
        }))

    @classmethod
    def load(cls, folder: Path) -> "StackedFamily":
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text())
        obj = cls(StackedConfig(**{k: v for k, v in meta["config"].items() if k in StackedConfig.__dataclass_fields__}))
        obj.feature_names = tuple(meta["feature_names"])
        obj.gbm = LightgbmFamily.load(folder)
        obj.fold_models = [BehaviourBertFamily.load(folder / f"fold_{k}") for k in range(obj.config.folds)]
        a = meta["arch"]
        obj.encoder = EventEncoder(a["layers"], a["hidden"], a["heads"], a["max_events"])
        obj.encoder.load_state_dict(load_file(str(folder / ENCODER_FILE)))
        obj.encoder.eval()
        obj.pca_mean = np.array(meta["pca_mean"], np.float32)
        obj.pca_components = np.array(meta["pca_components"], np.float32)
        return obj
