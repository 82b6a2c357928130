"""Paired comparison of families: fast weighted PR-AUC, the paired bootstrap, the champion rule."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mlcore.compare import average_precision_batch, choose_champion, paired_bootstrap


def _task(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    signal = y + rng.normal(0, 1.0, n)
    return rng, y, signal


def test_batched_average_precision_is_sklearns_with_weights_and_ties():
    rng, y, signal = _task()
    p = np.round(1 / (1 + np.exp(-signal)), 2)  # many ties
    weights = np.stack([np.ones(len(y)), rng.integers(0, 3, len(y)).astype(float), rng.uniform(0, 2, len(y))])
    got = average_precision_batch(y, p, weights)
    for row, w in zip(got, weights):
        assert row == pytest.approx(average_precision_score(y, p, sample_weight=w), abs=1e-12)


def test_paired_bootstrap_sees_a_real_difference_and_not_a_tie():
    rng, y, signal = _task()
    good = signal + rng.normal(0, 0.3, len(y))
    worse = signal + rng.normal(0, 1.5, len(y))
    clear = paired_bootstrap([(y, good, worse, None)], n_boot=300)
    assert clear.diff > 0 and clear.low > 0 and clear.low <= clear.diff <= clear.high
    # The same model with a hair of noise: the interval straddles 0.
    twin = good + rng.normal(0, 1e-3, len(y))
    tie = paired_bootstrap([(y, twin, good, None)], n_boot=300)
    assert tie.low < 0 < tie.high and abs(tie.diff) < 0.01
    # Identical scores: exactly 0, and pairing makes the interval a point.
    same = paired_bootstrap([(y, good, good, np.ones(len(y)))], n_boot=100)
    assert same.diff == 0 and same.low == 0 and same.high == 0
    # Several dates: the point estimate is the mean of the per-date differences; seeded, so repeatable.
    _, y2, s2 = _task(seed=1)
    two = paired_bootstrap([(y, good, worse, None), (y2, s2, s2 + rng.normal(0, 1.5, len(y2)), None)],
                           n_boot=200, seed=3)
    again = paired_bootstrap([(y, good, worse, None), (y2, s2, s2 + np.random.default_rng(9).normal(0, 1.5, len(y2)),
                                                        None)], n_boot=200, seed=3)
    assert two.mean_a == pytest.approx(np.mean([average_precision_score(y, good), average_precision_score(y2, s2)]))
    assert two.low > 0 and again.low > 0


def test_champion_rule_promotes_only_a_challenger_whose_interval_is_above_zero():
    rng, y, signal = _task()
    lgbm = signal + rng.normal(0, 1.0, len(y))
    close = lgbm + rng.normal(0, 0.05, len(y))  # a hair different: a close call
    better = signal + rng.normal(0, 0.2, len(y))
    keep = choose_champion(y, {"lightgbm": lgbm, "stacked": close}, None, n_boot=300)
    assert keep.winner == "lightgbm" and keep.reference == "lightgbm" and "stays" in keep.text
    win = choose_champion(y, {"logreg": close, "lightgbm": lgbm, "stacked": better}, None, n_boot=300)
    assert win.winner == "stacked" and win.comparisons["stacked"]["low"] > 0
    # Against an incumbent champion, even lightgbm must clear it.
    held = choose_champion(y, {"current": better, "lightgbm": lgbm}, None, incumbent="current", n_boot=300)
    assert held.winner == "current"
