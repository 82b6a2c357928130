"""Where to draw the alert line: the churn-probability threshold with the highest expected profit.

Alerting a customer costs one action (`action_cost`: staff time, the coupon). It pays when
the customer would have churned (probability p, calibrated) and the action keeps them
(`success_rate`), which saves `value × value_horizon_share`. So, alerting everyone with
p ≥ t:

    expected_profit(t) = Σ_{i: p_i ≥ t} ( p_i × value_i × value_horizon_share × success_rate − action_cost )

Assumptions, to be read next to the number: probabilities are calibrated; the action works
equally often for every alerted customer (the next-best action's measured lift is the
place to refine `success_rate`); a customer who would not have churned gains nothing from
the action but still costs it; `values` are the money at stake per customer (e.g. the
`Customer.value` yearly spend) and `value_horizon_share` turns it into profit won back
(e.g. a 30% gross margin over one year kept → 0.3).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

CURVE_POINTS = 101  # thresholds 0.00, 0.01, ..., 1.00


@dataclass(frozen=True)
class ProfitPoint:
    threshold: float
    expected_profit: float
    n_alerted: int


@dataclass(frozen=True)
class ThresholdChoice:
    """The best threshold on a 0.01 grid, the profit curve for the plot, and the threshold in use."""

    threshold: float
    expected_profit: float
    n_alerted: int
    curve: tuple[ProfitPoint, ...]
    action_cost: float
    success_rate: float
    value_horizon_share: float
    current_threshold: float | None = None
    current_expected_profit: float | None = None
    current_n_alerted: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must lie in [0, 1]")
        if not 1 <= len(self.curve) <= CURVE_POINTS:
            raise ValueError(f"the profit curve has 1 to {CURVE_POINTS} points")
        if (self.current_threshold is None) != (self.current_expected_profit is None):
            raise ValueError("the threshold in use comes with its expected profit")

    @property
    def gain_over_current(self) -> float | None:
        """Extra expected profit from moving the threshold in use to the chosen one."""
        if self.current_expected_profit is None:
            return None
        return self.expected_profit - self.current_expected_profit

    def as_dict(self) -> dict:
        return {
            "threshold": self.threshold, "expected_profit": self.expected_profit, "n_alerted": self.n_alerted,
            "action_cost": self.action_cost, "success_rate": self.success_rate,
            "value_horizon_share": self.value_horizon_share,
            "current_threshold": self.current_threshold, "current_expected_profit": self.current_expected_profit,
            "current_n_alerted": self.current_n_alerted, "gain_over_current": self.gain_over_current,
            "curve": [{"threshold": p.threshold, "expected_profit": p.expected_profit, "n_alerted": p.n_alerted} for p in self.curve],
        }


def _finite_number(name: str, value, low: float, high: float | None = None) -> float:
    try:
        number = float(value)  # accepts Decimal money
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(number) or number < low or (high is not None and number > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
    return number


def expected_profit_at(probabilities, values, *, threshold: float, action_cost: float, success_rate: float,
                       value_horizon_share: float = 1.0) -> tuple[float, int]:
    """(expected profit, customers alerted) when alerting everyone with p ≥ threshold."""
    choice = profit_threshold(probabilities, values, action_cost=action_cost, success_rate=success_rate,
                              value_horizon_share=value_horizon_share, current_threshold=threshold)
    return choice.current_expected_profit, choice.current_n_alerted


def profit_threshold(
    probabilities: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    *,
    action_cost: float,
    success_rate: float,
    value_horizon_share: float = 1.0,
    current_threshold: float | None = None,
) -> ThresholdChoice:
    """Choose the alert threshold (0.00-1.00 in steps of 0.01) with the highest expected profit.

    Ties go to the higher threshold: the same money for fewer alerts. When no threshold
    makes money the choice is 1.00 (alert almost nobody) with its profit, usually 0.
    """
    p = np.asarray(probabilities, dtype=float).ravel()
    v = np.asarray([float(x) for x in np.asarray(values, dtype=object).ravel()], dtype=float)
    if len(p) != len(v):
        raise ValueError(f"probabilities and values need one entry per customer ({len(p)} vs {len(v)})")
    if len(p) and (not np.isfinite(p).all() or (p < 0).any() or (p > 1).any()):
        raise ValueError("probabilities must be churn probabilities in [0, 1]")
    if len(v) and (not np.isfinite(v).all() or (v < 0).any()):
        raise ValueError("values must be finite and not negative")
    cost = _finite_number("action_cost", action_cost, 0.0)
    success = _finite_number("success_rate", success_rate, 0.0, 1.0)
    share = _finite_number("value_horizon_share", value_horizon_share, 0.0)
    current = None if current_threshold is None else _finite_number("current_threshold", current_threshold, 0.0, 1.0)

    gain = p * v * share * success - cost  # each customer's expected profit if alerted

    def at(threshold: float) -> tuple[float, int]:
        chosen = p >= threshold
        return float(gain[chosen].sum()), int(chosen.sum())

    # Integer percent grid, so 0.29 is exactly the float 0.29 and not 0.29000000000000004.
    curve = tuple(ProfitPoint(k / 100, *at(k / 100)) for k in range(CURVE_POINTS))
    best = max(curve, key=lambda point: (round(point.expected_profit, 9), point.threshold))
    current_profit, current_n = at(current) if current is not None else (None, None)
    return ThresholdChoice(
        threshold=best.threshold, expected_profit=best.expected_profit, n_alerted=best.n_alerted, curve=curve,
        action_cost=cost, success_rate=success, value_horizon_share=share,
        current_threshold=current, current_expected_profit=current_profit, current_n_alerted=current_n,
    )
