"""`logreg`: logistic regression on standardised, log-compressed numeric features."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression

from mlcore.families.base import FitReport, ProgressCallback, Rows
from mlcore.metrics import pr_auc

PARAMS_FILE = "logreg.json"


def _compress(x: np.ndarray) -> np.ndarray:
    # Counts, money and day spans are heavy-tailed; a signed log keeps one whale from owning a coefficient.
    return np.sign(x) * np.log1p(np.abs(x))


class LogregFamily:
    family: ClassVar[str] = "logreg"

    def __init__(self, *, C: float = 0.5, seed: int = 0):
        self.C, self.seed = C, seed
        self.feature_names: tuple[str, ...] = ()
        self.mean = self.std = self.coef = None
        self.intercept = 0.0

    def _z(self, features: np.ndarray) -> np.ndarray:
        return (_compress(np.asarray(features, dtype=np.float64)) - self.mean) / self.std

    def fit(self, train: Rows, valid: Rows, *, progress: ProgressCallback | None = None) -> FitReport:
        start = time.perf_counter()
        x = _compress(train.features.astype(np.float64))
        self.mean = x.mean(axis=0)
        self.std = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
        self.feature_names = train.feature_names
        model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000, random_state=self.seed)
        model.fit((x - self.mean) / self.std, train.labels, sample_weight=train.sample_weight)
        self.coef, self.intercept = model.coef_[0].astype(np.float64), float(model.intercept_[0])
        valid_pr = pr_auc(valid.labels, self.predict_proba(valid))
        if progress:
            progress({"step": 1, "total": 1, "valid_pr_auc": valid_pr})
        return FitReport(train_seconds=time.perf_counter() - start, n_train=len(train), n_valid=len(valid),
                         best_valid_pr_auc=valid_pr, epochs_run=1.0)

    def predict_proba(self, rows: Rows) -> np.ndarray:
        logit = self._z(rows.features) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-logit))

    def feature_contributions(self, rows: Rows) -> np.ndarray:
        """coef x standardised value: the push of each feature relative to the average training row."""
        return self._z(rows.features) * self.coef

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PARAMS_FILE).write_text(json.dumps({
            "family": self.family, "C": self.C, "seed": self.seed, "feature_names": list(self.feature_names),
            "mean": self.mean.tolist(), "std": self.std.tolist(), "coef": self.coef.tolist(), "intercept": self.intercept,
        }, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "LogregFamily":
        data = json.loads((Path(folder) / PARAMS_FILE).read_text())
        obj = cls(C=data["C"], seed=data["seed"])
        obj.feature_names = tuple(data["feature_names"])
        obj.mean, obj.std, obj.coef = (np.array(data[k], dtype=np.float64) for k in ("mean", "std", "coef"))
        obj.intercept = float(data["intercept"])
        return obj
