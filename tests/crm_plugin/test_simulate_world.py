"""The simulator's truth: the exact no-order probabilities match the simulated customers."""
from __future__ import annotations

import numpy as np
import pytest

from mlcore.simulation import world as W


@pytest.mark.parametrize("segment,action,action_day", [("regular", None, 0), ("bargain_hunter", "coupon", 2),
                                                        ("vip", "call", 0)])
def test_exact_probability_matches_a_monte_carlo_run_of_the_world(segment, action, action_day):
    n, window = 20_000, 30
    world = W.World(segments=np.array([segment] * n), state=np.full(n, W.AT_RISK, dtype=np.int8),
                    rng=np.random.default_rng(7))
    orders = np.zeros(n)
    for day in range(window):
        if action and day == action_day:
            for i in range(n):
                world.treat(i, action=action, until_day=window)
        orders += world.step(day)
    simulated = float((orders == 0).mean())
    exact = W.no_order_probability(W.AT_RISK, segment, window=window, action=action, action_day=action_day)
    # Binomial sd at n=20,000 is at most 0.0036; 4 sd.
    assert abs(simulated - exact) < 0.015


def test_actions_help_at_risk_customers_differently_per_segment_and_cannot_help_the_gone():
    best = {s: W.true_best_action(s) for s in W.SEGMENTS}
    assert len(set(best.values())) >= 3  # no single action is best for everyone
    for segment in W.SEGMENTS:
        p0 = W.no_order_probability(W.AT_RISK, segment, window=30)
        assert p0 - W.no_order_probability(W.AT_RISK, segment, window=30, action=best[segment]) > 0.1
        assert W.no_order_probability(W.GONE, segment, window=30, action=best[segment]) == 1.0


def test_the_scorer_ranks_customers_about_to_stop_ordering_higher():
    rng = np.random.default_rng(3)
    n, days = 3000, 200
    segments = np.array(["regular"] * n)
    world = W.World(segments=segments, state=np.zeros(n, dtype=np.int8), rng=rng)
    orders = np.zeros((n, days + 30), dtype=np.int16)
    for day in range(days + 30):
        orders[:, day] = world.step(day)
    none = np.zeros(n, dtype=bool)
    X = [W.features(orders, c, segments, none) for c in (100, 130, 160)]
    y = [W.no_order_labels(orders, c, 30) for c in (100, 130, 160)]
    scorer = W.train_scorer(X[:2], y[:2], X[2], y[2], day=160)
    assert scorer.valid_roc_auc > 0.65
