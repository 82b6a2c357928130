"""Comparing families on the same customers: active-customer masks, paired bootstrap intervals, the champion rule.

Two families scored on the same rows are compared *paired*: each bootstrap replicate resamples
customers once and measures both families on that same resample, so the interval is for the
difference itself (much narrower than two separate intervals, because both families find the
same easy churners). Several backtest dates are combined by resampling each date's customers
independently and averaging the per-date differences.

PR-AUC here is weighted average precision with sklearn's step definition (ties grouped), computed
for a whole batch of replicates at once: a replicate is a vector of multinomial counts times
the evaluation weights, so nothing is copied and one sort per family serves every replicate.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mlcore.families.base import Rows

N_BOOT = 1000
# Cheapest first: when two families are too close to call, the cheaper one is kept.
FAMILY_COST_ORDER = ("logreg", "lightgbm", "bert_events", "stacked", "bert", "bert_pretrained")
REFERENCE = "lightgbm"
# The validation metric the champion rule compares: PR-AUC on the active customers (the ones alerts
# go to), stored under this key with every trained version's metrics (training.calibrate_on_validation).
CHAMPION_METRIC = "active_pr_auc"


def active_mask(rows: Rows, horizon_days: int) -> np.ndarray:
    """Customers who ordered within `horizon_days` before the row's cutoff: the ones alerts go to."""
    days = rows.features[:, list(rows.feature_names).index("days_since_last_order")]
    return np.asarray(days < horizon_days)


def average_precision_batch(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted average precision for each row of `weights` [B, n] (sklearn's definition, ties grouped)."""
    y = np.asarray(y).astype(bool)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(-np.asarray(p, dtype=np.float64), kind="mergesort")
    ps, ys, ws = np.asarray(p)[order], y[order], weights[:, order]
    # The last position of each run of equal scores is a threshold.
    last = np.flatnonzero(np.r_[ps[1:] != ps[:-1], True])
    tp = np.cumsum(ws * ys, axis=1)[:, last]
    all_ = np.cumsum(ws, axis=1)[:, last]
    total_pos = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(all_ > 0, tp / all_, 0.0)
        recall = tp / total_pos
    d_recall = np.diff(np.c_[np.zeros(len(recall)), recall], axis=1)
    ap = np.sum(d_recall * precision, axis=1)
    return np.where(total_pos[:, 0] > 0, ap, np.nan)


@dataclass(frozen=True)
class PairedDiff:
    """Mean difference (a - b) of a metric over dates, and its paired bootstrap interval."""

    mean_a: float
    mean_b: float
    diff: float
    low: float
    high: float
    n_boot: int

    def to_dict(self) -> dict:
        return {k: (None if not np.isfinite(v) else round(float(v), 6)) if isinstance(v, float) else v
                for k, v in self.__dict__.items()}


def paired_bootstrap(samples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]], *,
                     n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> PairedDiff:
    """Paired bootstrap of PR-AUC(a) - PR-AUC(b), averaged over dates.

    `samples`: one (y, p_a, p_b, weight) per date, aligned by customer. Each replicate draws the
    customers of every date with replacement (multinomial counts), scores both families on the
    same draw, and averages the per-date differences. Returns the point estimate on the data as
    it is and the percentile interval.
    """
    rng = np.random.default_rng(seed)
    diffs = np.zeros(n_boot)
    point_a, point_b = [], []
    for y, pa, pb, w in samples:
        y = np.asarray(y)
        w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
        point_a.append(average_precision_batch(y, pa, w[None])[0])
        point_b.append(average_precision_batch(y, pb, w[None])[0])
        counts = rng.multinomial(len(y), np.full(len(y), 1.0 / len(y)), size=n_boot) * w[None]
        diffs += average_precision_batch(y, pa, counts) - average_precision_batch(y, pb, counts)
    diffs /= max(1, len(samples))
    diffs = diffs[np.isfinite(diffs)]
    tail = (1 - level) / 2
    low, high = (np.quantile(diffs, [tail, 1 - tail]) if len(diffs) else (np.nan, np.nan))
    mean_a, mean_b = float(np.mean(point_a)), float(np.mean(point_b))
    return PairedDiff(mean_a=mean_a, mean_b=mean_b, diff=mean_a - mean_b, low=float(low), high=float(high),
                      n_boot=int(len(diffs)))


@dataclass(frozen=True)
class ChampionDecision:
    winner: str
    reference: str
    comparisons: dict  # challenger -> PairedDiff.to_dict() against the reference
    text: str


def _cost(name: str) -> int:
    return FAMILY_COST_ORDER.index(name) if name in FAMILY_COST_ORDER else len(FAMILY_COST_ORDER)


def choose_champion(y: np.ndarray, predictions: Mapping[str, np.ndarray], weight: np.ndarray | None, *,
                    incumbent: str | None = None, n_boot: int = N_BOOT, seed: int = 0) -> ChampionDecision:
    """The champion rule on one set of rows (pass the active-customer validation rows).

    The reference is `incumbent` (the current champion's key in `predictions`), else lightgbm when
    it is among the candidates, else the cheapest. A challenger replaces it only if the lower end
    of the 95% paired bootstrap interval of its PR-AUC difference is above 0; of several such,
    the largest mean difference wins. A close call keeps the reference.
    """
    names = list(predictions)
    if not names:
        raise ValueError("no candidates to choose a champion from")
    reference = incumbent if incumbent in predictions else (
        REFERENCE if REFERENCE in predictions else min(names, key=_cost))
    comparisons: dict[str, dict] = {}
    best, best_diff = reference, 0.0
    for name in sorted(names, key=_cost):
        if name == reference:
            continue
        d = paired_bootstrap([(y, predictions[name], predictions[reference], weight)], n_boot=n_boot, seed=seed)
        comparisons[name] = d.to_dict()
        if np.isfinite(d.low) and d.low > 0 and d.diff > best_diff:
            best, best_diff = name, d.diff
    if not comparisons:
        text = f"{reference}: the only candidate"
    elif best == reference:
        text = f"{reference} stays: no challenger's PR-AUC interval lies above it"
    else:
        c = comparisons[best]
        text = (f"{best} beats {reference}: PR-AUC +{c['diff']:.4f} "
                f"(95% paired bootstrap {c['low']:+.4f} .. {c['high']:+.4f})")
    return ChampionDecision(winner=best, reference=reference, comparisons=comparisons, text=text)
