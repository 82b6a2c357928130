"""`lightgbm`: gradient-boosted trees on the numeric features, early-stopped on validation."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

import lightgbm as lgb
import numpy as np

from mlcore.families.base import FitReport, ProgressCallback, Rows
from mlcore.metrics import pr_auc

MODEL_FILE = "lightgbm.txt"
META_FILE = "lightgbm.json"


class LightgbmFamily:
    family: ClassVar[str] = "lightgbm"

    def __init__(self, *, seed: int = 0, num_threads: int = 2, max_rounds: int = 600):
        self.seed, self.num_threads, self.max_rounds = seed, num_threads, max_rounds
        self.booster: lgb.Booster | None = None
        self.feature_names: tuple[str, ...] = ()

    def fit(self, train: Rows, valid: Rows, *, progress: ProgressCallback | None = None) -> FitReport:
        start = time.perf_counter()
        self.feature_names = train.feature_names
        # Small leaves and strong regularisation: shops have thousands of rows, not millions.
        params = {
            "objective": "binary", "metric": "average_precision", "learning_rate": 0.03, "num_leaves": 15,
            "min_data_in_leaf": 30, "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
            "lambda_l2": 1.0, "seed": self.seed, "deterministic": True, "force_row_wise": True,
            "num_threads": self.num_threads, "verbosity": -1,
        }
        names = list(self.feature_names)
        dtrain = lgb.Dataset(train.features, label=train.labels, weight=train.sample_weight, feature_name=names,
                             free_raw_data=False)
        dvalid = lgb.Dataset(valid.features, label=valid.labels, reference=dtrain, feature_name=names)
        self.booster = lgb.train(params, dtrain, num_boost_round=self.max_rounds, valid_sets=[dvalid],
                                 callbacks=[lgb.early_stopping(50, verbose=False)])
        best = int(self.booster.best_iteration or self.booster.current_iteration())
        valid_pr = pr_auc(valid.labels, self.predict_proba(valid))
        if progress:
            progress({"step": best, "total": self.max_rounds, "valid_pr_auc": valid_pr})
        return FitReport(train_seconds=time.perf_counter() - start, n_train=len(train), n_valid=len(valid),
                         best_valid_pr_auc=valid_pr, epochs_run=float(best),
                         stopped_early=best < self.max_rounds, extra={"best_iteration": best})

    def _iteration(self) -> int | None:
        return self.booster.best_iteration or None

    def predict_proba(self, rows: Rows) -> np.ndarray:
        return np.asarray(self.booster.predict(rows.features, num_iteration=self._iteration()), dtype=np.float64)

    def feature_contributions(self, rows: Rows) -> np.ndarray:
        """SHAP values from LightGBM (pred_contrib), bias column dropped; log-odds units."""
        contrib = self.booster.predict(rows.features, num_iteration=self._iteration(), pred_contrib=True)
        return np.asarray(contrib, dtype=np.float64)[:, :-1]

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / MODEL_FILE), num_iteration=self._iteration())
        (folder / META_FILE).write_text(json.dumps({"family": self.family, "seed": self.seed,
                                                    "feature_names": list(self.feature_names)}))

    @classmethod
    def load(cls, folder: Path) -> "LightgbmFamily":
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text())
        obj = cls(seed=meta["seed"])
        obj.booster = lgb.Booster(model_file=str(folder / MODEL_FILE))
        obj.feature_names = tuple(meta["feature_names"])
        return obj
