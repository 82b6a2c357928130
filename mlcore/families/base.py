"""The contract between datasets, model families, training, the registry and scoring.

A family turns `Rows` into churn probabilities. Everything a family needs to score again
later (weights, tokenizer, normalisation stats) it writes into its artifact folder in
`save` and reads back in `load`; the registry adds the manifest and calibration around it.

Text contract: `Rows.texts[i]` is one customer's deterministic text; segments (profile,
aggregates, one event each) are separated by "\n", newest event first, so a family can
occlude one segment at a time to explain a score.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Rows:
    """One row per (customer, cutoff). Arrays are aligned by position."""

    customer_ids: np.ndarray  # int64, database primary keys
    as_of: np.ndarray  # datetime64[ns, UTC-naive], the cutoff each row was built at
    texts: list[str]
    features: np.ndarray  # float32 [n, d], raw (families normalise with their own stats)
    feature_names: tuple[str, ...]
    labels: np.ndarray | None = None  # int8 {0, 1}: 1 = churned; None when scoring
    sample_weight: np.ndarray | None = None  # float32, optional
    # uint8 [n, max_events, fields]: event tokens before the cutoff, newest last (mlcore.event_tokens)
    events: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.customer_ids)
        if len(self.as_of) != n or len(self.texts) != n or self.features.shape[0] != n:
            raise ValueError("Rows arrays must all have one entry per row")
        if self.features.ndim != 2 or self.features.shape[1] != len(self.feature_names):
            raise ValueError("features must be [n_rows, len(feature_names)]")
        if self.labels is not None and len(self.labels) != n:
            raise ValueError("labels must have one entry per row")
        if self.events is not None and len(self.events) != n:
            raise ValueError("events must have one sequence per row")

    def __len__(self) -> int:
        return len(self.customer_ids)

    def take(self, index: np.ndarray) -> "Rows":
        """The rows at `index` (integer positions or a boolean mask)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return Rows(
            customer_ids=self.customer_ids[index],
            as_of=self.as_of[index],
            texts=[self.texts[i] for i in index],
            features=self.features[index],
            feature_names=self.feature_names,
            labels=None if self.labels is None else self.labels[index],
            sample_weight=None if self.sample_weight is None else self.sample_weight[index],
            events=None if self.events is None else self.events[index],
        )


@dataclass(frozen=True)
class FitReport:
    """What training a family produced, for the registry and the report."""

    train_seconds: float
    n_train: int
    n_valid: int
    best_valid_pr_auc: float | None = None
    epochs_run: float | None = None
    stopped_early: bool = False
    hit_time_budget: bool = False
    extra: dict = field(default_factory=dict)


ProgressCallback = Callable[[dict], None]  # receives {"step":, "total":, "loss":, "valid_pr_auc":, ...}


@runtime_checkable
class ChurnModel(Protocol):
    """A trainable churn model. Probabilities are raw here; calibration wraps them."""

    family: ClassVar[str]

    def fit(self, train: Rows, valid: Rows, *, progress: ProgressCallback | None = None) -> FitReport: ...

    def predict_proba(self, rows: Rows) -> np.ndarray:
        """P(churn) for each row, float64 [n]."""
        ...

    def feature_contributions(self, rows: Rows) -> np.ndarray:
        """Per-row, per-feature push on the churn score (log-odds units), float64 [n, d]."""
        ...

    def save(self, folder: Path) -> None: ...

    @classmethod
    def load(cls, folder: Path) -> "ChurnModel": ...


@runtime_checkable
class TextEncoderModel(ChurnModel, Protocol):
    """A family with a text encoder whose outputs can be cached between daily runs."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """Encoder output per text, float32 [n, h]; deterministic for a given version."""
        ...

    def predict_proba_from_embeddings(self, embeddings: np.ndarray, features: np.ndarray) -> np.ndarray: ...

    def text_segment_effects(self, rows: Rows, *, max_segments: int = 8) -> list[list[tuple[int, float]]]:
        """Occlusion: for each row, (segment index, change in P(churn) when that segment is removed)."""
        ...


def predict_with_contributions(model: ChurnModel, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """`predict_proba` and `feature_contributions` of `rows` together, as scoring needs them.

    A family whose two answers share costly work (an encoder pass over every row) defines a method
    of this name to do that work once; for the others it is simply both calls.
    """
    both = getattr(model, "predict_with_contributions", None)
    if both is not None:
        return both(rows)
    return model.predict_proba(rows), model.feature_contributions(rows)
