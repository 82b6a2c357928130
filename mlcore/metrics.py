"""Ranking and calibration metrics, and downsampled curves for the model report."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

MAX_POINTS = 101


def pr_auc(y, p) -> float:
    y = np.asarray(y)
    return float(average_precision_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def roc_auc(y, p) -> float:
    y = np.asarray(y)
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def brier(y, p) -> float:
    return float(np.mean((np.asarray(p, dtype=np.float64) - np.asarray(y)) ** 2))


def ece(y, p, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(total / max(len(y), 1))


def top_fraction(y, p, fraction: float) -> tuple[float, float]:
    """(lift, capture) among the `fraction` highest-scored customers."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    k = max(1, int(round(len(y) * fraction)))
    top = np.argsort(-p, kind="stable")[:k]
    base = y.mean()
    captured = y[top].sum() / y.sum() if y.sum() else float("nan")
    return (float(y[top].mean() / base) if base else float("nan")), float(captured)


def summary(y, p) -> dict:
    lift, capture = top_fraction(y, p, 0.10)
    return {"roc_auc": roc_auc(y, p), "pr_auc": pr_auc(y, p), "lift_at_10pct": lift, "capture_at_10pct": capture,
            "brier": brier(y, p), "ece": ece(y, p)}


def _down(*arrays):
    n = len(arrays[0])
    if n <= MAX_POINTS:
        return [np.round(a, 5).tolist() for a in arrays]
    idx = np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(int))
    return [np.round(np.asarray(a)[idx], 5).tolist() for a in arrays]


def curves(y, p) -> dict:
    """ROC, PR, reliability bins, lift/capture per decile and a score histogram, each <= 101 points."""
    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    out: dict = {}
    if 0 < y.sum() < len(y):
        fpr, tpr, _ = roc_curve(y, p)
        prec, rec, _ = precision_recall_curve(y, p)
        out["roc"] = dict(zip(("fpr", "tpr"), _down(fpr, tpr)))
        out["pr"] = dict(zip(("recall", "precision"), _down(rec[::-1], prec[::-1])))
    bins = np.minimum((p * 10).astype(int), 9)
    cal = {"mean_predicted": [], "fraction_positive": [], "count": []}
    for b in range(10):
        m = bins == b
        if m.any():
            cal["mean_predicted"].append(round(float(p[m].mean()), 5))
            cal["fraction_positive"].append(round(float(y[m].mean()), 5))
            cal["count"].append(int(m.sum()))
    out["calibration"] = cal
    deciles = [round(0.1 * k, 1) for k in range(1, 11)]
    lifts, captures = zip(*(top_fraction(y, p, d) for d in deciles))
    out["lift"] = {"fraction": deciles, "lift": [round(v, 5) for v in lifts], "capture": [round(v, 5) for v in captures]}
    counts, edges = np.histogram(p, bins=20, range=(0.0, 1.0))
    out["histogram"] = {"edges": np.round(edges, 3).tolist(), "count": counts.tolist()}
    out["score_hist"] = {"edges": out["histogram"]["edges"], "counts": out["histogram"]["count"]}  # contract name
    out.setdefault("roc", {"fpr": [], "tpr": []})  # one class only: no curve, but the keys exist
    out.setdefault("pr", {"recall": [], "precision": []})
    return out


def evaluate(y, p) -> dict:
    """The mlcore contract: roc_auc, pr_auc, lift_at_10pct, capture_at_10pct, brier, ece (None where undefined)."""
    y = np.asarray(y)
    if len(y) == 0:
        return dict.fromkeys(("roc_auc", "pr_auc", "lift_at_10pct", "capture_at_10pct", "brier", "ece"))
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in summary(y, p).items()}
