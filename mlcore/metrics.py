"""Ranking and calibration metrics, and downsampled curves for the model report.

Every function takes an optional `weight` per row (evaluation weights, e.g. untreated rows
only: mlcore.dataset.untreated_weights). Rows of weight 0 are dropped; when the rest all weigh
1 the unweighted formula runs, so results without weights are exactly what they always were.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

MAX_POINTS = 101


def weighted(y, p, weight):
    """(y, p, w) without the rows of weight 0; w is None when every remaining row weighs 1."""
    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    if weight is None:
        return y, p, None
    w = np.asarray(weight, dtype=np.float64)
    if w.shape != y.shape or (w < 0).any() or not np.isfinite(w).all():
        raise ValueError(f"weights must be one finite, non-negative number per row ({w.shape} for {y.shape} rows)")
    keep = w > 0
    y, p, w = y[keep], p[keep], w[keep]
    return y, p, (None if (w == 1).all() else w)


def _both_classes(y) -> bool:
    return bool(0 < np.asarray(y).sum() < len(y))


def pr_auc(y, p, weight=None) -> float:
    y, p, w = weighted(y, p, weight)
    return float(average_precision_score(y, p, sample_weight=w)) if _both_classes(y) else float("nan")


def roc_auc(y, p, weight=None) -> float:
    y, p, w = weighted(y, p, weight)
    return float(roc_auc_score(y, p, sample_weight=w)) if _both_classes(y) else float("nan")


def brier(y, p, weight=None) -> float:
    y, p, w = weighted(y, p, weight)
    return float(np.average((p - y) ** 2, weights=w)) if len(y) else float("nan")


def ece(y, p, bins: int = 10, weight=None) -> float:
    """Expected calibration error over equal-width probability bins."""
    y, p, w = weighted(y, p, weight)
    y = y.astype(np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if not m.any():
            continue
        if w is None:
            total += m.sum() * abs(p[m].mean() - y[m].mean())
        else:
            total += w[m].sum() * abs(np.average(p[m], weights=w[m]) - np.average(y[m], weights=w[m]))
    return float(total / max(len(y) if w is None else w.sum(), 1))


def top_fraction(y, p, fraction: float, weight=None) -> tuple[float, float]:
    """(lift, capture) among the `fraction` highest-scored customers (by weight when weighted)."""
    y, p, w = weighted(y, p, weight)
    y = y.astype(np.float64)
    order = np.argsort(-p, kind="stable")
    if w is None:
        k = max(1, int(round(len(y) * fraction)))
        top = order[:k]
        base = y.mean()
        captured = y[top].sum() / y.sum() if y.sum() else float("nan")
        return (float(y[top].mean() / base) if base else float("nan")), float(captured)
    # The best-scored rows whose weight first reaches `fraction` of the total weight.
    k = max(1, int(np.searchsorted(np.cumsum(w[order]), fraction * w.sum() * (1 - 1e-12)) + 1))
    top = order[:k]
    base = np.average(y, weights=w)
    positives = (w * y).sum()
    captured = (w[top] * y[top]).sum() / positives if positives else float("nan")
    return (float(np.average(y[top], weights=w[top]) / base) if base else float("nan")), float(captured)


def summary(y, p, weight=None) -> dict:
    lift, capture = top_fraction(y, p, 0.10, weight)
    return {"roc_auc": roc_auc(y, p, weight), "pr_auc": pr_auc(y, p, weight), "lift_at_10pct": lift,
            "capture_at_10pct": capture, "brier": brier(y, p, weight), "ece": ece(y, p, weight=weight)}


def _down(*arrays):
    n = len(arrays[0])
    if n <= MAX_POINTS:
        return [np.round(a, 5).tolist() for a in arrays]
    idx = np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(int))
    return [np.round(np.asarray(a)[idx], 5).tolist() for a in arrays]


def curves(y, p, weight=None) -> dict:
    """ROC, PR, reliability bins, lift/capture per decile and a score histogram, each <= 101 points.

    Weighted: curves, reliability means and the histogram use the weights; `count` stays rows.
    """
    y, p, w = weighted(y, p, weight)
    out: dict = {}
    if _both_classes(y):
        fpr, tpr, _ = roc_curve(y, p, sample_weight=w)
        prec, rec, _ = precision_recall_curve(y, p, sample_weight=w)
        out["roc"] = dict(zip(("fpr", "tpr"), _down(fpr, tpr)))
        out["pr"] = dict(zip(("recall", "precision"), _down(rec[::-1], prec[::-1])))
    bins = np.minimum((p * 10).astype(int), 9)
    cal = {"mean_predicted": [], "fraction_positive": [], "count": []}
    for b in range(10):
        m = bins == b
        if m.any():
            bw = None if w is None else w[m]
            cal["mean_predicted"].append(round(float(np.average(p[m], weights=bw)), 5))
            cal["fraction_positive"].append(round(float(np.average(y[m], weights=bw)), 5))
            cal["count"].append(int(m.sum()))
    out["calibration"] = cal
    deciles = [round(0.1 * k, 1) for k in range(1, 11)]
    lifts, captures = zip(*(top_fraction(y, p, d, w) for d in deciles))
    out["lift"] = {"fraction": deciles, "lift": [round(v, 5) for v in lifts], "capture": [round(v, 5) for v in captures]}
    counts, edges = np.histogram(p, bins=20, range=(0.0, 1.0), weights=w)
    if w is not None:
        counts = np.round(counts, 3)
    out["histogram"] = {"edges": np.round(edges, 3).tolist(), "count": counts.tolist()}
    out["score_hist"] = {"edges": out["histogram"]["edges"], "counts": out["histogram"]["count"]}  # contract name
    out.setdefault("roc", {"fpr": [], "tpr": []})  # one class only: no curve, but the keys exist
    out.setdefault("pr", {"recall": [], "precision": []})
    return out


def evaluate(y, p, weight=None) -> dict:
    """The mlcore contract: roc_auc, pr_auc, lift_at_10pct, capture_at_10pct, brier, ece (None where undefined)."""
    y, p, w = weighted(y, p, weight)
    if len(y) == 0:
        return dict.fromkeys(("roc_auc", "pr_auc", "lift_at_10pct", "capture_at_10pct", "brier", "ece"))
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in summary(y, p, w).items()}
