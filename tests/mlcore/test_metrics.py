"""evaluate() and curves(): the numbers the backtest and the model report publish."""
import numpy as np
import pytest

from mlcore.metrics import MAX_POINTS, curves, evaluate


def test_perfect_ranking_captures_the_top_decile():
    y = np.array([1] * 20 + [0] * 80)
    p = np.linspace(1, 0, 100)
    m = evaluate(y, p)
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == pytest.approx(1.0)
    assert m["lift_at_10pct"] == pytest.approx(5.0)  # top 10 are all churners, base rate 20%
    assert m["capture_at_10pct"] == pytest.approx(0.5)


def test_calibration_error_and_brier_of_known_scores():
    y = np.array([0, 0, 1, 1])
    m = evaluate(y, np.array([0.0, 0.0, 1.0, 1.0]))
    assert m["brier"] == 0.0 and m["ece"] == 0.0
    m = evaluate(y, np.array([0.5, 0.5, 0.5, 0.5]))
    assert m["brier"] == pytest.approx(0.25) and m["ece"] == pytest.approx(0.0)
    assert evaluate(np.array([0, 0, 0, 1]), np.full(4, 0.9))["ece"] == pytest.approx(0.65)


def test_one_class_has_no_auc_instead_of_a_crash():
    m = evaluate(np.zeros(10, dtype=int), np.linspace(0, 1, 10))
    assert m["roc_auc"] is None and m["pr_auc"] is None


def test_curves_have_every_key_the_report_reads_and_at_most_101_points():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p = np.clip(y * 0.3 + rng.random(5000) * 0.7, 0, 1)
    c = curves(y, p)
    assert set(c) >= {"roc", "pr", "calibration", "lift", "score_hist"}
    assert set(c["roc"]) == {"fpr", "tpr"} and set(c["pr"]) == {"recall", "precision"}
    assert set(c["calibration"]) == {"mean_predicted", "fraction_positive", "count"}
    assert set(c["lift"]) == {"fraction", "lift", "capture"} and set(c["score_hist"]) == {"edges", "counts"}
    for curve in c.values():
        for values in curve.values():
            assert len(values) <= MAX_POINTS
    assert sum(c["score_hist"]["counts"]) == 5000 and sum(c["calibration"]["count"]) == 5000
    assert c["lift"]["capture"][-1] == pytest.approx(1.0)
    assert c["roc"]["fpr"][0] == 0.0 and c["roc"]["tpr"][-1] == 1.0
