"""Profit threshold: the expected-profit formula, the chosen line, the curve, the threshold in use."""
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from mlcore.profit import expected_profit_at, profit_threshold


def test_hand_computed_example():
    # Gains if alerted: 0.9*100*0.5-10 = 35, 0.5*100*0.5-10 = 15, 0.1*100*0.5-10 = -5.
    choice = profit_threshold([0.9, 0.5, 0.1], [100, 100, 100], action_cost=10, success_rate=0.5)
    assert choice.expected_profit == pytest.approx(50.0)
    assert choice.n_alerted == 2
    # Every threshold in (0.10, 0.50] earns 50; the highest wins (same money, no extra alerts).
    assert choice.threshold == 0.50


def test_value_horizon_share_scales_the_money_won_back():
    # With a 30% margin the middle customer (0.5*100*0.3*0.5 = 7.5 < 10) is no longer worth a call.
    choice = profit_threshold([0.9, 0.5, 0.1], [100, 100, 100], action_cost=10, success_rate=0.5, value_horizon_share=0.3)
    assert choice.n_alerted == 1
    assert choice.expected_profit == pytest.approx(0.9 * 100 * 0.3 * 0.5 - 10)
    assert choice.threshold == 0.90


def test_curve_has_101_points_for_the_plot():
    rng = np.random.default_rng(0)
    p, v = rng.uniform(0, 1, 500), rng.lognormal(5, 1, 500)
    choice = profit_threshold(p, v, action_cost=20, success_rate=0.3)
    thresholds = [pt.threshold for pt in choice.curve]
    assert len(choice.curve) == 101
    assert thresholds[0] == 0.0 and thresholds[-1] == 1.0 and thresholds[29] == 0.29
    counts = [pt.n_alerted for pt in choice.curve]
    assert counts[0] == 500 and all(a >= b for a, b in zip(counts, counts[1:]))
    assert choice.expected_profit == max(pt.expected_profit for pt in choice.curve)
    assert len(choice.as_dict()["curve"]) == 101


def test_chosen_threshold_beats_every_other_by_brute_force():
    rng = np.random.default_rng(1)
    p, v = rng.beta(2, 5, 2000), rng.lognormal(5, 1, 2000)
    choice = profit_threshold(p, v, action_cost=15, success_rate=0.25)
    brute = max((p[p >= k / 100] * v[p >= k / 100] * 0.25 - 15).sum() for k in range(101))
    assert choice.expected_profit == pytest.approx(brute)


def test_compares_with_the_threshold_in_use():
    choice = profit_threshold([0.9, 0.5, 0.1], [100, 100, 100], action_cost=10, success_rate=0.5, current_threshold=0.05)
    assert choice.current_threshold == 0.05
    assert choice.current_n_alerted == 3
    assert choice.current_expected_profit == pytest.approx(45.0)
    assert choice.gain_over_current == pytest.approx(5.0)
    assert expected_profit_at([0.9, 0.5, 0.1], [100, 100, 100], threshold=0.7, action_cost=10, success_rate=0.5) == (pytest.approx(35.0), 1)
    assert profit_threshold([0.5], [1], action_cost=0, success_rate=1).gain_over_current is None


def test_dearer_actions_raise_the_line():
    rng = np.random.default_rng(2)
    p, v = rng.uniform(0, 1, 3000), rng.lognormal(5, 0.5, 3000)
    thresholds = [profit_threshold(p, v, action_cost=c, success_rate=0.3).threshold for c in (1, 10, 30, 60)]
    assert thresholds == sorted(thresholds) and thresholds[0] < thresholds[-1]


def test_when_no_alert_pays_almost_nobody_is_alerted():
    choice = profit_threshold([0.2, 0.4], [10, 10], action_cost=100, success_rate=0.5)
    assert choice.threshold == 1.0 and choice.n_alerted == 0 and choice.expected_profit == 0.0


def test_money_as_decimal_is_accepted():
    choice = profit_threshold([0.9, 0.5], [Decimal("100.00"), Decimal("50.50")], action_cost=Decimal("10.00"), success_rate=0.5)
    assert choice.expected_profit == pytest.approx(35 + 0.5 * 50.5 * 0.5 - 10)


def test_no_customers_gives_zero_profit():
    choice = profit_threshold([], [], action_cost=5, success_rate=0.5)
    assert choice.expected_profit == 0.0 and choice.n_alerted == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"probabilities": [0.5, 1.2]}, "probabilities must be churn probabilities in \\[0, 1\\]"),
        ({"probabilities": [0.5, float("nan")]}, "probabilities must be churn probabilities"),
        ({"values": [1.0]}, "one entry per customer \\(2 vs 1\\)"),
        ({"values": [1.0, -3.0]}, "values must be finite and not negative"),
        ({"action_cost": -1}, "action_cost must be at least 0"),
        ({"success_rate": 1.5}, "success_rate must be between 0 and 1"),
        ({"success_rate": "often"}, "success_rate must be a number"),
        ({"value_horizon_share": -0.1}, "value_horizon_share must be at least 0"),
        ({"current_threshold": 2}, "current_threshold must be between 0 and 1"),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_message(kwargs, message):
    args = {"probabilities": [0.5, 0.6], "values": [1.0, 2.0], "action_cost": 1.0, "success_rate": 0.5}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        profit_threshold(args.pop("probabilities"), args.pop("values"), **args)
