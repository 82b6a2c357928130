"""Measured retention lift: churn among alerted/treated customers vs the random held-out group.

The interval for the difference of two churn rates is Newcombe's hybrid score interval
(Newcombe 1998, method 10): a Wilson score interval for each rate, combined. Unlike the
textbook Wald interval it stays inside [-1, 1], behaves at 0 or 100% churn and keeps close
to its nominal coverage at the small counts a young control group has.

Lift is in probability units, signed so that positive is good: control churn - treated churn.
"""
from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Hashable, Mapping, Sequence

import numpy as np
import pandas as pd

MIN_N = 30  # customers per arm before a lift is reported as measured
MIN_EVENTS = 5  # churned (and kept) customers across both arms before a lift is reported


@dataclass(frozen=True)
class LiftEstimate:
    """Churn treated vs held out, the lift and its interval; undefined values are None, never NaN.

    When `enough_data` is False, `reason` says why in words a CRM manager understands; the
    rates are still filled where defined so a report can show them as early numbers.
    """

    treated_churned: int
    treated_n: int
    control_churned: int
    control_n: int
    confidence: float
    treated_churn_rate: float | None
    control_churn_rate: float | None
    absolute_lift: float | None  # control churn - treated churn; > 0 means fewer churned
    lift_low: float | None
    lift_high: float | None
    relative_lift: float | None  # absolute_lift / control churn: share of churn prevented
    enough_data: bool
    reason: str = ""
    # Columns the held-out rate was standardised on (re-weighted to the treated group's mix);
    # empty for a plain comparison. control_churned/control_n stay the raw counts.
    adjusted_for: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, churned, n in (("treated", self.treated_churned, self.treated_n), ("control", self.control_churned, self.control_n)):
            if not 0 <= churned <= n:
                raise ValueError(f"{name}: churned must be between 0 and n, got {churned} of {n}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be between 0 and 1, got {self.confidence}")
        if not self.enough_data and not self.reason:
            raise ValueError("a lift without enough data must say why (reason)")

    @property
    def treated_kept_rate(self) -> float | None:
        return None if self.treated_churn_rate is None else 1.0 - self.treated_churn_rate

    @property
    def control_kept_rate(self) -> float | None:
        return None if self.control_churn_rate is None else 1.0 - self.control_churn_rate

    @property
    def clearly_positive(self) -> bool:
        """Measured with enough data and the whole interval above zero."""
        return self.enough_data and self.lift_low is not None and self.lift_low > 0

    def as_dict(self) -> dict:
        """JSON-ready, for the API and the model report."""
        out = asdict(self)
        out.update(treated_kept_rate=self.treated_kept_rate, control_kept_rate=self.control_kept_rate,
                   clearly_positive=self.clearly_positive)
        return out

    def summary(self, label: str = "alerted") -> str:
        """One line: '18.0% of alerted churned (n=400) vs 27.5% held out (n=40): lift 9.5 pts (95% CI 1.2 to 17.8)'."""
        if self.treated_churn_rate is None or self.control_churn_rate is None:
            return f"{label}: no lift yet. {self.reason}"
        text = (
            f"{self.treated_churn_rate:.1%} of {label} churned (n={self.treated_n}) vs "
            f"{self.control_churn_rate:.1%} held out (n={self.control_n}): "
            f"lift {100 * self.absolute_lift:+.1f} pts "
            f"({self.confidence:.0%} CI {100 * self.lift_low:+.1f} to {100 * self.lift_high:+.1f})"
        )
        return text if self.enough_data else f"{text}. {self.reason}"


def _wilson(events: int, n: int, z: float) -> tuple[float, float]:
    p = events / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamp the floating-point dust at the ends (0 events gives exactly 0 as lower bound).
    return max(0.0, centre - half), min(1.0, centre + half)


def _check_count(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    try:
        value = operator.index(value)  # ints and numpy integers; floats like 3.0 are refused
    except TypeError:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def _not_enough_data(treated_churned: int, treated_n: int, control_churned: int, control_n: int, *, min_n: int,
                     min_events: int, control_label: str, extra: list[str] = ()) -> str:
    """The evidence rule in words: '' when there is enough data, else why not."""
    problems = []
    if treated_n < min_n:
        problems.append(f"only {treated_n} treated customers (need {min_n})")
    if control_n < min_n:
        problems.append(f"only {control_n} {control_label} (need {min_n})")
    problems.extend(extra)
    churned = treated_churned + control_churned
    kept = treated_n + control_n - churned
    if churned < min_events:
        problems.append(f"only {churned} churned customers in both groups together (need {min_events})")
    if kept < min_events:
        problems.append(f"only {kept} kept customers in both groups together (need {min_events})")
    return ("Not enough data yet: " + "; ".join(problems) + ".") if problems else ""


def retention_lift(
    treated_churned: int,
    treated_n: int,
    control_churned: int,
    control_n: int,
    *,
    confidence: float = 0.95,
    min_n: int = MIN_N,
    min_events: int = MIN_EVENTS,
) -> LiftEstimate:
    """Lift = control churn rate - treated churn rate, with a Newcombe hybrid score interval."""
    treated_churned = _check_count("treated_churned", treated_churned)
    treated_n = _check_count("treated_n", treated_n)
    control_churned = _check_count("control_churned", control_churned)
    control_n = _check_count("control_n", control_n)
    if treated_churned > treated_n:
        raise ValueError(f"treated_churned ({treated_churned}) cannot exceed treated_n ({treated_n})")
    if control_churned > control_n:
        raise ValueError(f"control_churned ({control_churned}) cannot exceed control_n ({control_n})")
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")

    reason = _not_enough_data(treated_churned, treated_n, control_churned, control_n, min_n=min_n,
                              min_events=min_events, control_label="held-out customers")

    rate_t = treated_churned / treated_n if treated_n else None
    rate_c = control_churned / control_n if control_n else None
    lift = low = high = relative = None
    if rate_t is not None and rate_c is not None:
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        lo_c, hi_c = _wilson(control_churned, control_n, z)
        lo_t, hi_t = _wilson(treated_churned, treated_n, z)
        lift = rate_c - rate_t
        low = lift - math.sqrt((rate_c - lo_c) ** 2 + (hi_t - rate_t) ** 2)
        high = lift + math.sqrt((hi_c - rate_c) ** 2 + (rate_t - lo_t) ** 2)
        low, high = max(-1.0, low), min(1.0, high)
        relative = lift / rate_c if rate_c > 0 else None
    return LiftEstimate(
        treated_churned=treated_churned, treated_n=treated_n,
        control_churned=control_churned, control_n=control_n, confidence=float(confidence),
        treated_churn_rate=rate_t, control_churn_rate=rate_c, absolute_lift=lift,
        lift_low=low, lift_high=high, relative_lift=relative,
        enough_data=not reason, reason=reason,
    )


def standardised_retention_lift(
    strata: Mapping[Hashable, tuple[int, int, int, int]],
    *,
    adjusted_for: Sequence[str] = ("stratum",),
    confidence: float = 0.95,
    min_n: int = MIN_N,
    min_events: int = MIN_EVENTS,
) -> LiftEstimate:
    """Treated vs held out, with the held-out churn rate re-weighted to the treated group's mix.

    `strata` maps each stratum (a segment, a risk band, ...) to (treated_churned, treated_n,
    control_churned, control_n). When managers pick whom to treat by something the strata
    capture (e.g. coupons mostly for bargain hunters, who churn more anyway), the plain
    comparison is biased; this one compares like with like: the held-out rate is
    Σ_s w_s × control_rate_s with w_s the treated group's share in stratum s. It cannot
    remove choices the strata do not capture (a manager's hunch about one customer).

    Interval: MOVER (Zou & Donner 2008), the idea behind Newcombe's method applied to a
    weighted sum: a Wilson interval per stratum for the held-out rates, combined with the
    weights into an interval for the standardised rate, then with the treated rate's
    Wilson interval into one for the difference. With one stratum it is exactly
    `retention_lift`'s Newcombe interval.
    """
    if not isinstance(confidence, (int, float)) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")
    cells = {}
    for key, counts in strata.items():
        if len(counts) != 4:
            raise ValueError(f"stratum {key!r}: need (treated_churned, treated_n, control_churned, control_n)")
        xt, nt, xc, nc = (_check_count(f"stratum {key!r} {name}", v) for name, v in
                          zip(("treated_churned", "treated_n", "control_churned", "control_n"), counts))
        if xt > nt or xc > nc:
            raise ValueError(f"stratum {key!r}: churned cannot exceed n")
        cells[key] = (xt, nt, xc, nc)
    used = {k: c for k, c in cells.items() if c[1] > 0}  # strata the treated group occupies
    treated_churned = sum(c[0] for c in used.values())
    treated_n = sum(c[1] for c in used.values())
    control_churned = sum(c[2] for c in used.values())
    control_n = sum(c[3] for c in used.values())
    uncovered = sorted((str(k) for k, c in used.items() if c[3] == 0))

    reason = _not_enough_data(treated_churned, treated_n, control_churned, control_n, min_n=min_n,
                              min_events=min_events, control_label="held-out customers like them",
                              extra=[f"no held-out customers to compare with in {', '.join(uncovered)}"] if uncovered else [])

    rate_t = treated_churned / treated_n if treated_n else None
    rate_c = lift = low = high = relative = None
    if rate_t is not None and not uncovered:
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        rate_c = below = above = 0.0
        for xt, nt, xc, nc in used.values():
            w, rate_s = nt / treated_n, xc / nc
            lo_s, hi_s = _wilson(xc, nc, z)
            rate_c += w * rate_s
            below += (w * (rate_s - lo_s)) ** 2
            above += (w * (hi_s - rate_s)) ** 2
        lo_c, hi_c = max(0.0, rate_c - math.sqrt(below)), min(1.0, rate_c + math.sqrt(above))
        lo_t, hi_t = _wilson(treated_churned, treated_n, z)
        lift = rate_c - rate_t
        low = max(-1.0, lift - math.sqrt((rate_c - lo_c) ** 2 + (hi_t - rate_t) ** 2))
        high = min(1.0, lift + math.sqrt((hi_c - rate_c) ** 2 + (rate_t - lo_t) ** 2))
        relative = lift / rate_c if rate_c > 0 else None
    return LiftEstimate(
        treated_churned=treated_churned, treated_n=treated_n,
        control_churned=control_churned, control_n=control_n, confidence=float(confidence),
        treated_churn_rate=rate_t, control_churn_rate=rate_c, absolute_lift=lift,
        lift_low=low, lift_high=high, relative_lift=relative,
        enough_data=not reason, reason=reason, adjusted_for=tuple(adjusted_for),
    )


@dataclass(frozen=True)
class LiftBreakdown:
    """The measured lift overall, per action and per segment (see `retention_lift_breakdown`)."""

    overall: LiftEstimate  # everyone the policy alerted vs held out: randomised, the headline number
    treated_any: LiftEstimate  # alerted and acted on (any action) vs held out: observational
    by_action: Mapping[str, LiftEstimate] = field(default_factory=dict)  # observational
    by_segment: Mapping[str, LiftEstimate] = field(default_factory=dict)  # randomised within segment
    # Held-out customers someone treated anyway (e.g. found by hand in the CRM): they stay
    # held out, which shrinks the measured lift; many of them mean the hold-out is leaking.
    control_treated_anyway: int = 0

    def as_dict(self) -> dict:
        return {
            "control_treated_anyway": self.control_treated_anyway,
            "overall": self.overall.as_dict(),
            "treated_any": self.treated_any.as_dict(),
            "by_action": {k: v.as_dict() for k, v in self.by_action.items()},
            "by_segment": {k: v.as_dict() for k, v in self.by_segment.items()},
        }


REQUIRED_COLUMNS = ("is_control", "churned", "action", "segment")


def as_flags(values: pd.Series, name: str) -> np.ndarray:
    """A 0/1 or boolean column as a bool array; anything else (None, "no", 2) is refused.

    Strings are refused on purpose: bool("False") is True, which would silently move
    customers between the held-out and treated groups.
    """
    if values.isna().any():
        raise ValueError(f"{name} has missing values; keep only customers whose {name} is known")
    numeric = pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
    if not numeric and any(isinstance(v, str) for v in values):
        raise ValueError(f"{name} must be 0/1 or False/True, not text")
    numbers = values.astype(float).to_numpy()
    if ((numbers != 0) & (numbers != 1)).any():
        raise ValueError(f"{name} must be 0/1 (or False/True)")
    return numbers == 1


def retention_lift_breakdown(
    df: pd.DataFrame,
    *,
    confidence: float = 0.95,
    min_n: int = MIN_N,
    min_events: int = MIN_EVENTS,
    adjust_for: Sequence[str] = (),
) -> LiftBreakdown:
    """Lift overall, per action and per segment over alert-eligible customers with a known outcome.

    One row per alert-eligible customer (per alert episode) whose outcome is known:
    `is_control` (held out by the control group), `churned` (0/1), `action` (the action
    taken, None/NaN when none) and `segment`.

    - `overall` compares everyone the policy alerted (acted on or not) with the held-out
      group. Assignment was random, so this is an unbiased estimate of what alerting does.
      A held-out customer who was treated anyway (e.g. found by hand in the CRM) stays in
      the held-out group: that dilutes the lift a little but never biases it upwards.
    - `treated_any` and `by_action` compare customers who got an action with the whole
      held-out group. Managers choose whom to act on and how, so these are observational:
      if they act on the riskiest customers first, the lift is understated; if they act on
      the easiest, overstated.
    - `by_segment` compares alerted vs held out within each segment (randomised there too).

    `adjust_for` (e.g. ("segment", "risk_band")) standardises `treated_any` and `by_action`
    on those columns (see `standardised_retention_lift`), which removes the bias from
    managers choosing actions by segment or risk; recommended once the held-out group is
    large enough to have customers in every stratum the treated occupy.
    """
    adjust_for = tuple(adjust_for)
    missing = [c for c in (*REQUIRED_COLUMNS, *adjust_for) if c not in df.columns]
    if missing:
        raise ValueError(f"lift data is missing column(s) {missing}; need {list(REQUIRED_COLUMNS)} and the adjust_for columns")
    churned = as_flags(df["churned"], "churned").astype(int)
    control = as_flags(df["is_control"], "is_control")
    action = df["action"].where(df["action"].notna() & (df["action"].astype(str) != ""), None)
    has_action = action.notna().to_numpy()
    segment = df["segment"].fillna("").astype(str).to_numpy()

    def lift(treated_mask, control_mask) -> LiftEstimate:
        return retention_lift(
            int(churned[treated_mask].sum()), int(treated_mask.sum()),
            int(churned[control_mask].sum()), int(control_mask.sum()),
            confidence=confidence, min_n=min_n, min_events=min_events,
        )

    if adjust_for:
        strata_names = df[adjust_for[0]].astype(str).to_numpy(dtype=object)
        for column in adjust_for[1:]:
            strata_names = strata_names + " / " + df[column].astype(str).to_numpy(dtype=object)
        strata_codes, strata_labels = pd.factorize(pd.Series(strata_names, dtype=object))

    def adjusted_lift(treated_mask, control_mask) -> LiftEstimate:
        if not adjust_for:
            return lift(treated_mask, control_mask)
        cells = {}
        for code, label in enumerate(strata_labels):
            in_s = strata_codes == code
            t, c = treated_mask & in_s, control_mask & in_s
            cells[label] = (int(churned[t].sum()), int(t.sum()), int(churned[c].sum()), int(c.sum()))
        return standardised_retention_lift(cells, adjusted_for=adjust_for, confidence=confidence,
                                           min_n=min_n, min_events=min_events)

    alerted = ~control
    treated = alerted & has_action
    by_action = {
        str(a): adjusted_lift(treated & (action.to_numpy() == a), control)
        for a in sorted(action[treated].unique(), key=str)
    }
    by_segment = {
        s: lift(alerted & (segment == s), control & (segment == s)) for s in sorted(set(segment))
    }
    return LiftBreakdown(
        overall=lift(alerted, control),
        treated_any=adjusted_lift(treated, control),
        by_action=by_action,
        by_segment=by_segment,
        control_treated_anyway=int((control & has_action).sum()),
    )
