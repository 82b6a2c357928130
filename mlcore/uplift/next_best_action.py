"""Next-best action: which retention action most lowers this customer's chance to churn.

Estimated from logged interventions and outcomes, under a minimum-evidence rule, with one of:

- a pooled model (`learner="pooled"`, what the product uses): one churn model over the
  baseline and every action together, with the action, the segment and action x segment as
  features (an S-learner with interactions). Every action is compared on the same footing,
  the numeric features' effect is learnt from all rows at once, and an action's effect in a
  segment where it was tried on few customers is pulled towards its effect elsewhere (L2)
  instead of resting on a handful of outcomes;
- a T-learner (one churn model per action and one for the baseline; uplift =
  P(churn | x, none) - P(churn | x, action)) or an X-learner. When an action lacks the evidence for a
model, the estimate falls back to that action's observed rates, within the customer's
segment when the segment alone has enough customers, else over all segments; below that
the action gets no estimate, and with no estimate at all there is no recommendation. A
model's estimate is only used in segments where the action has been tried
(`EvidenceRule.min_in_segment`), since elsewhere it would be a guess dressed as a number.

The baseline is the random held-out group when the data carries `is_control` (untreated
alerted customers were passed over by their manager for a reason, so they are not a fair
comparison); otherwise every untreated row. While the held-out group is still below
`EvidenceRule.min_control` (10% of alerts take long to reach it), every untreated row is the
baseline, and the evidence says so ("not treated (too few held out yet)"): which action is
best is a comparison between the actions and does not depend on the baseline; only the size
of the estimated uplift does.

A customer's actions are ranked on one rung of the rule only: when the model covers some of
the actions in the customer's segment, actions it does not cover there are left out rather
than compared through raw rates from other segments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlcore.uplift.lift import as_flags

METHOD_POOLED = "pooled_model"
METHOD_T = "t_learner"
METHOD_X = "x_learner"
MODEL_METHODS = (METHOD_POOLED, METHOD_T, METHOD_X)
LEARNERS = {"pooled": METHOD_POOLED, "t": METHOD_T, "x": METHOD_X}
METHOD_SEGMENT = "segment_rates"
METHOD_OVERALL = "overall_rates"
METHOD_NONE = "none"


@dataclass(frozen=True)
class EvidenceRule:
    """How much logged evidence an action needs before it may be recommended."""

    min_treated: int = 30  # customers who got the action (in the scope: all, or one segment)
    min_control: int = 30  # baseline customers in the same scope
    min_events: int = 5  # churned, and kept, customers across both arms, for a model
    # A model's estimate counts for a customer only when their segment has at least this
    # many customers who got the action and as many baseline ones; otherwise the model
    # would be extrapolating to a segment the action was never tried in.
    min_in_segment: int = 10

    def __post_init__(self) -> None:
        for name in ("min_treated", "min_control", "min_events", "min_in_segment"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")


@dataclass(frozen=True)
class ActionEstimate:
    """One action's estimated uplift for one customer, with the evidence behind it."""

    action: str
    estimated_uplift: float  # reduction in P(churn), probability units; > 0 is good
    method: str
    kept_treated: float  # observed share kept among customers who got the action (in `scope`)
    kept_baseline: float  # observed share kept in the baseline (in `scope`)
    n_treated: int
    n_baseline: int
    scope: str  # "" for all segments, else the segment name
    evidence_text: str

    def __post_init__(self) -> None:
        if self.method not in (*MODEL_METHODS, METHOD_SEGMENT, METHOD_OVERALL):
            raise ValueError(f"unknown method {self.method!r}")
        if not np.isfinite(self.estimated_uplift) or not -1.0 <= self.estimated_uplift <= 1.0:
            raise ValueError(f"estimated_uplift must be a finite probability difference, got {self.estimated_uplift}")


@dataclass(frozen=True)
class Recommendation:
    """The suggested action (None when no action has shown enough evidence of helping)."""

    action: str | None
    estimated_uplift: float | None
    evidence_text: str
    method: str
    alternatives: tuple[ActionEstimate, ...] = ()  # every action with evidence, best first

    def __post_init__(self) -> None:
        if (self.action is None) != (self.estimated_uplift is None):
            raise ValueError("a recommendation has both an action and its uplift, or neither")
        if self.action is None and self.method != METHOD_NONE:
            raise ValueError("no action means method 'none'")
        if not self.evidence_text:
            raise ValueError("a recommendation must carry its evidence in words")

    def as_dict(self) -> dict:
        return {
            "action": self.action,
            "estimated_uplift": self.estimated_uplift,
            "evidence_text": self.evidence_text,
            "method": self.method,
            "alternatives": [
                {"action": a.action, "estimated_uplift": a.estimated_uplift, "method": a.method, "evidence_text": a.evidence_text}
                for a in self.alternatives
            ],
        }


@dataclass(frozen=True)
class _Counts:
    n_treated: int
    churned_treated: int
    n_baseline: int
    churned_baseline: int

    def enough(self, rule: EvidenceRule) -> bool:
        return self.n_treated >= rule.min_treated and self.n_baseline >= rule.min_control

    def model_ok(self, rule: EvidenceRule) -> bool:
        churned = self.churned_treated + self.churned_baseline
        kept = self.n_treated + self.n_baseline - churned
        # Each arm's model needs both outcomes to be fitted at all.
        both_outcomes = 0 < self.churned_treated < self.n_treated and 0 < self.churned_baseline < self.n_baseline
        return self.enough(rule) and both_outcomes and churned >= rule.min_events and kept >= rule.min_events

    @property
    def kept_treated(self) -> float:
        return 1.0 - self.churned_treated / self.n_treated

    @property
    def kept_baseline(self) -> float:
        return 1.0 - self.churned_baseline / self.n_baseline


class NextBestActionModel:
    """Fit on logged alert-eligible customers; then `recommend(x)` for one, `recommend_many(df)` for many.

    Training data, one row per alert-eligible customer episode with a known outcome:
    the `feature_columns` (numeric: value, churn probability, ...), `action` (None/NaN when
    untreated), `churned` (0/1), `segment`, and optionally `is_control`. The segment is
    one-hot encoded into the models' features automatically, so effects may differ by it.
    `learner`: "pooled" (one model, action x segment interactions), "t" or "x".
    """

    def __init__(
        self,
        *,
        feature_columns: Sequence[str],
        rule: EvidenceRule | None = None,
        learner: str = "t",
        segment_as_feature: bool = True,
        action_labels: Mapping[str, str] | None = None,
        min_uplift: float = 0.0,
        regularisation: float = 1.0,
    ) -> None:
        if learner not in LEARNERS:
            raise ValueError(f"learner must be 'pooled' (one model with action x segment), 't' (T-learner) or "
                             f"'x' (X-learner), got {learner!r}")
        if regularisation <= 0:
            raise ValueError("regularisation (inverse strength C) must be positive")
        self.feature_columns = tuple(feature_columns)
        self.rule = rule or EvidenceRule()
        self.learner = learner
        self.segment_as_feature = segment_as_feature
        self.action_labels = dict(action_labels or {})
        self.min_uplift = float(min_uplift)
        self.regularisation = float(regularisation)
        self._fitted = False

    # ---- fitting -------------------------------------------------------------------------

    def fit(self, df: pd.DataFrame) -> "NextBestActionModel":
        required = [*self.feature_columns, "action", "churned", "segment"]
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise ValueError(f"next-best-action data is missing column(s) {missing}")
        y = as_flags(df["churned"], "churned").astype(int)
        action = df["action"].where(df["action"].notna() & (df["action"].astype(str) != ""), None).to_numpy(dtype=object)
        untreated = pd.isna(action)
        self.uses_control_group = "is_control" in df.columns
        control = as_flags(df["is_control"], "is_control") if self.uses_control_group else np.zeros(len(df), bool)
        baseline = (control & untreated) if self.uses_control_group else untreated
        self.baseline_label = "held out" if self.uses_control_group else "not treated"
        if self.uses_control_group and baseline.sum() < self.rule.min_control:
            # Too few held out to compare with yet: every untreated alerted customer stands in.
            baseline = untreated
            self.baseline_label = "not treated (too few held out yet)"
        segment = df["segment"].fillna("").astype(str).to_numpy()
        self.segments = tuple(sorted(set(segment)))

        X = self._design(df)
        rows_ok = np.isfinite(X).all(axis=1)
        self.actions = tuple(sorted({str(a) for a in action[~untreated]}))
        self._overall: dict[str, _Counts] = {}
        self._by_segment: dict[tuple[str, str], _Counts] = {}
        self._models: dict[str, Any] = {}
        self._effect_models: dict[str, tuple[Any, Any, float]] = {}

        def counts(t_mask, b_mask) -> _Counts:
            return _Counts(int(t_mask.sum()), int(y[t_mask].sum()), int(b_mask.sum()), int(y[b_mask].sum()))

        base_fit = baseline & rows_ok
        base_counts = counts(np.zeros(len(df), bool), base_fit)
        if self.learner == "pooled":
            for a in self.actions:
                treated = (action == a) & ~control
                self._overall[a] = counts(treated, baseline)
                for s in self.segments:
                    self._by_segment[(a, s)] = counts(treated & (segment == s), baseline & (segment == s))
            self._fit_pooled(X, y, action, control, baseline, rows_ok, segment, counts)
            self._fitted = True
            return self
        base_model = None
        if base_counts.n_baseline >= self.rule.min_control and 0 < base_counts.churned_baseline < base_counts.n_baseline:
            base_model = self._classifier().fit(X[base_fit], y[base_fit])
        self._base_model = base_model

        for a in self.actions:
            treated = (action == a) & ~control
            self._overall[a] = counts(treated, baseline)
            for s in self.segments:
                self._by_segment[(a, s)] = counts(treated & (segment == s), baseline & (segment == s))
            fit_counts = counts(treated & rows_ok, base_fit)
            if base_model is None or not fit_counts.model_ok(self.rule):
                continue
            treated_model = self._classifier().fit(X[treated & rows_ok], y[treated & rows_ok])
            self._models[a] = treated_model
            if self.learner == "x":
                # X-learner: impute each customer's own effect with the other arm's model,
                # then regress those effects on x; weight by the share treated (propensity).
                xt, yt = X[treated & rows_ok], y[treated & rows_ok]
                xb, yb = X[base_fit], y[base_fit]
                effect_treated = base_model.predict_proba(xt)[:, 1] - yt  # churn avoided
                effect_baseline = yb - treated_model.predict_proba(xb)[:, 1]
                tau_t = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(xt, effect_treated)
                tau_b = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(xb, effect_baseline)
                share_treated = len(yt) / (len(yt) + len(yb))
                self._effect_models[a] = (tau_t, tau_b, share_treated)
        self._fitted = True
        return self

    def _fit_pooled(self, X, y, action, control, baseline, rows_ok, segment, counts) -> None:
        """One churn model over the baseline and all actions: arm, segment and arm x segment features."""
        self._pooled = None
        arm = np.where(baseline, "", action.astype(str))
        fit_rows = rows_ok & (baseline | (~pd.isna(action) & ~control))
        # An action takes part once it meets the rule over all segments (treated vs baseline).
        self._pooled_actions = tuple(a for a in self.actions if self._overall[a].enough(self.rule))
        if not self._pooled_actions or (baseline & rows_ok).sum() < self.rule.min_control:
            return
        churned = int(y[fit_rows].sum())
        kept = int(fit_rows.sum()) - churned
        if churned < self.rule.min_events or kept < self.rule.min_events:
            return
        self._pooled_scaler = StandardScaler().fit(X[fit_rows][:, :len(self.feature_columns)])
        design = self._pooled_design(X[fit_rows], arm[fit_rows], segment[fit_rows])
        self._pooled = LogisticRegression(C=self.regularisation, max_iter=2000).fit(design, y[fit_rows])

    def _pooled_design(self, X: np.ndarray, arm: np.ndarray, segment: np.ndarray) -> np.ndarray:
        k = len(self.feature_columns)
        numeric = self._pooled_scaler.transform(X[:, :k]) if k else np.zeros((len(X), 0))
        seg = X[:, k:]  # the segment one-hot from _design
        arms = np.stack([(arm == a).astype(float) for a in self.actions], axis=1) if self.actions else np.zeros((len(X), 0))
        cross = [arms[:, [j]] * seg for j in range(arms.shape[1])]
        return np.hstack([numeric, seg, arms, *cross])

    def _pooled_churn(self, X: np.ndarray, segment: np.ndarray, arm: str) -> np.ndarray:
        return self._pooled.predict_proba(self._pooled_design(X, np.full(len(X), arm, dtype=object), segment))[:, 1]

    def _classifier(self):
        return make_pipeline(StandardScaler(), LogisticRegression(C=self.regularisation, max_iter=1000))

    def _design(self, df: pd.DataFrame) -> np.ndarray:
        numeric = df[list(self.feature_columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        if not self.segment_as_feature:
            return numeric
        segment = df["segment"].fillna("").astype(str).to_numpy() if "segment" in df.columns else np.full(len(df), "")
        onehot = np.stack([(segment == s).astype(float) for s in self.segments], axis=1) if self.segments else np.zeros((len(df), 0))
        return np.hstack([numeric, onehot])

    # ---- estimating ----------------------------------------------------------------------

    def uplift_table(self, df: pd.DataFrame) -> pd.DataFrame:
        """Estimated reduction in churn probability per row (index of df) and action; NaN = no evidence.

        A column `method:<action>` beside each action says which rung of the evidence rule applied.
        """
        self._check_fitted()
        if "segment" not in df.columns:
            raise ValueError("customers to score need a 'segment' column (use '' when unknown)")
        missing = [c for c in self.feature_columns if c not in df.columns]
        if missing:
            raise ValueError(f"customers to score are missing feature column(s) {missing}")
        X = self._design(df)
        rows_ok = np.isfinite(X).all(axis=1)
        segment = df["segment"].fillna("").astype(str).to_numpy()
        out = pd.DataFrame(index=df.index)
        for a in self.actions:
            est = np.full(len(df), np.nan)
            method = np.full(len(df), METHOD_NONE, dtype=object)
            supported = rows_ok.copy()
            if self.learner == "pooled":
                # The pooled model needs the action tried in the segment, not a held-out group there.
                supported &= np.array([self._tried_in(a, s) for s in segment], dtype=bool)
                if self._pooled is not None and a in self._pooled_actions and supported.any():
                    xs, ss = X[supported], segment[supported]
                    est[supported] = np.clip(self._pooled_churn(xs, ss, "") - self._pooled_churn(xs, ss, a), -1.0, 1.0)
                    method[supported] = METHOD_POOLED
            elif self.segment_as_feature:
                supported &= np.array([self._supported(a, s) for s in segment], dtype=bool)
            if self.learner != "pooled" and a in self._models and supported.any():
                xs = X[supported]
                if self.learner == "x":
                    tau_t, tau_b, g = self._effect_models[a]
                    # Trust the effect model fitted on the larger arm's imputations more.
                    value = g * tau_b.predict(xs) + (1 - g) * tau_t.predict(xs)
                else:
                    value = self._base_model.predict_proba(xs)[:, 1] - self._models[a].predict_proba(xs)[:, 1]
                est[supported] = np.clip(value, -1.0, 1.0)
                method[supported] = LEARNERS[self.learner]
            for i in np.flatnonzero(method == METHOD_NONE):
                seg_counts = self._by_segment.get((a, segment[i]))
                if seg_counts is not None and seg_counts.enough(self.rule):
                    est[i] = seg_counts.kept_treated - seg_counts.kept_baseline
                    method[i] = METHOD_SEGMENT
                elif self._overall[a].enough(self.rule):
                    est[i] = self._overall[a].kept_treated - self._overall[a].kept_baseline
                    method[i] = METHOD_OVERALL
            out[a] = est
            out[f"method:{a}"] = method
        return out

    def _tried_in(self, action: str, segment: str) -> bool:
        c = self._by_segment.get((action, segment))
        return c is not None and c.n_treated >= self.rule.min_in_segment

    def _supported(self, action: str, segment: str) -> bool:
        c = self._by_segment.get((action, segment))
        return c is not None and min(c.n_treated, c.n_baseline) >= self.rule.min_in_segment

    def recommend(self, x: Mapping[str, Any] | pd.Series) -> Recommendation:
        """The next-best action for one customer: a mapping with the feature columns and 'segment'."""
        return self.recommend_many(pd.DataFrame([dict(x)]))[0]

    def recommend_many(self, df: pd.DataFrame) -> list[Recommendation]:
        """One Recommendation per row of df, in order."""
        table = self.uplift_table(df)
        segment = df["segment"].fillna("").astype(str).to_numpy()
        results = []
        for i in range(len(df)):
            estimates = []
            for a in self.actions:
                value = table[a].iat[i]
                if np.isnan(value):
                    continue
                method = table[f"method:{a}"].iat[i]
                estimates.append(self._estimate(a, float(value), method, segment[i]))
            if any(e.method in MODEL_METHODS for e in estimates):
                # One rung per customer: a model's estimate for this customer is not compared with
                # another action's raw rates borrowed from other segments.
                estimates = [e for e in estimates if e.method in MODEL_METHODS]
            estimates.sort(key=lambda e: (-e.estimated_uplift, e.action))
            results.append(self._choose(tuple(estimates)))
        return results

    def _estimate(self, action: str, value: float, method: str, segment: str) -> ActionEstimate:
        seg_counts = self._by_segment.get((action, segment))
        # Show the customer's own segment's rates when they meet the rule, else all segments'.
        if seg_counts is not None and seg_counts.enough(self.rule) and method != METHOD_OVERALL:
            c, scope = seg_counts, segment
        else:
            c, scope = self._overall[action], ""
        label = self.action_labels.get(action, action)
        text = f"{label}: {c.kept_treated:.0%} kept vs {c.kept_baseline:.0%} {self.baseline_label}, n={c.n_treated}"
        text += f" (segment {scope})" if scope else " (all segments)"
        if method in MODEL_METHODS:
            text += f"; estimated {100 * value:+.0f} pts for this customer"
        return ActionEstimate(
            action=action, estimated_uplift=value, method=method,
            kept_treated=c.kept_treated, kept_baseline=c.kept_baseline,
            n_treated=c.n_treated, n_baseline=c.n_baseline, scope=scope, evidence_text=text,
        )

    def _choose(self, estimates: tuple[ActionEstimate, ...]) -> Recommendation:
        if not estimates:
            most = max(self._overall.items(), key=lambda kv: kv[1].n_treated, default=None)
            detail = f"; most so far: {self.action_labels.get(most[0], most[0])} n={most[1].n_treated}" if most else ""
            return Recommendation(
                action=None, estimated_uplift=None, method=METHOD_NONE, alternatives=(),
                evidence_text=(
                    f"No recommendation yet: no action has {self.rule.min_treated} treated and "
                    f"{self.rule.min_control} {self.baseline_label} customers to compare{detail}."
                ),
            )
        best = estimates[0]
        if best.estimated_uplift <= self.min_uplift:
            return Recommendation(
                action=None, estimated_uplift=None, method=METHOD_NONE, alternatives=estimates,
                evidence_text=f"No action has shown a lift for customers like this yet. Best so far: {best.evidence_text}.",
            )
        return Recommendation(
            action=best.action, estimated_uplift=best.estimated_uplift, method=best.method,
            evidence_text=best.evidence_text, alternatives=estimates,
        )

    def evidence_summary(self) -> list[dict]:
        """Per action: counts, observed kept rates and whether a model was fitted (for the report)."""
        self._check_fitted()
        return [
            {
                "action": a, "n_treated": c.n_treated, "n_baseline": c.n_baseline,
                "kept_treated": c.kept_treated if c.n_treated else None,
                "kept_baseline": c.kept_baseline if c.n_baseline else None,
                "model": a in self._models or (self.learner == "pooled" and self._pooled is not None
                                                and a in self._pooled_actions),
                "enough_for_rates": c.enough(self.rule),
            }
            for a, c in self._overall.items()
        ]

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise ValueError("fit the next-best-action model on logged outcomes first")
