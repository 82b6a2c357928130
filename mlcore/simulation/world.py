"""The simulated world behind `manage.py simulate` (Django-free): who is about to leave, who orders
today, and what each retention action truly does, known only to the simulator.

Each customer is in one hidden state per day: 0 = content, 1 = at risk (orders much less often
and may leave any day), 2 = gone (never orders again). Every day a customer first orders (Poisson
with the state's rate), then moves between states. A retention action, from the day it is taken
until the end of the alert's outcome window, multiplies the at-risk customer's daily leaving
hazard by (1 - effect[action][segment]) and adds effect x RECOVER_BOOST to the daily chance that
they are content again (and order as usual): actions work differently per segment, which is what the
next-best action has to find out. Because the process is a small Markov chain, the exact chance
that a customer places no order in a window, with or without an action, can be computed from
the state at the alert (`no_order_probability`); the true lift is the average of those exact
differences, so the measured lift can be checked against it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

CONTENT, AT_RISK, GONE = 0, 1, 2
SEGMENTS = ("vip", "regular", "bargain_hunter", "new")
ACTIONS = ("call", "email", "coupon", "recommendation", "escalation")
# Orders per day while content (the demo shop's rates; new customers behave like regulars).
ORDER_RATE = {"vip": 1 / 13, "regular": 1 / 26, "bargain_hunter": 1 / 34, "new": 1 / 26}
AT_RISK_RATE_FACTOR = 0.1  # an at-risk customer orders 10x less often
# Site visits per day, as a multiple of the content order rate, by state: the early signal (an
# unhappy customer stops browsing first). The demo shop's customers visit 1.2-2.6x as often as they order.
VISIT_FACTOR = (5.0, 0.1, 0.0)
ENTER_RISK = {"vip": 0.005, "regular": 0.008, "bargain_hunter": 0.011, "new": 0.012}  # per day
LEAVE_CONTENT = 0.0002  # abrupt leaving while content, per day
LEAVE_AT_RISK = 0.015  # per day while at risk
RECOVER = 0.015  # per day, at risk -> content
RECOVER_BOOST = 0.12  # an action with effect e adds e x this to the daily chance of winning the customer back

# The truth the loop has to discover: share of the at-risk leaving hazard an action removes.
TRUE_EFFECTS: dict[str, dict[str, float]] = {
    "vip": {"call": 0.75, "email": 0.10, "coupon": 0.10, "recommendation": 0.25, "escalation": 0.20},
    "regular": {"call": 0.20, "email": 0.60, "coupon": 0.25, "recommendation": 0.15, "escalation": 0.10},
    "bargain_hunter": {"call": 0.05, "email": 0.15, "coupon": 0.80, "recommendation": 0.10, "escalation": 0.05},
    "new": {"call": 0.20, "email": 0.15, "coupon": 0.20, "recommendation": 0.70, "escalation": 0.10},
}
# What managers reach for out of habit (before they trust the suggestions): partly by segment.
HABIT = {
    "vip": {"call": 0.5, "email": 0.2, "coupon": 0.1, "recommendation": 0.1, "escalation": 0.1},
    "regular": {"call": 0.2, "email": 0.4, "coupon": 0.2, "recommendation": 0.1, "escalation": 0.1},
    "bargain_hunter": {"call": 0.1, "email": 0.3, "coupon": 0.4, "recommendation": 0.1, "escalation": 0.1},
    "new": {"call": 0.2, "email": 0.4, "coupon": 0.2, "recommendation": 0.1, "escalation": 0.1},
}


def true_best_action(segment: str) -> str:
    effects = TRUE_EFFECTS[segment]
    return max(effects, key=lambda a: (effects[a], a))


def _transition(segment: str, effect: float) -> np.ndarray:
    """Daily transition matrix (from row to column) for one segment and action effect (0 = none)."""
    leave = LEAVE_AT_RISK * (1.0 - effect)
    recover = RECOVER + RECOVER_BOOST * effect
    enter = ENTER_RISK[segment]
    return np.array([
        [1 - enter - LEAVE_CONTENT, enter, LEAVE_CONTENT],
        [recover, 1 - recover - leave, leave],
        [0.0, 0.0, 1.0],
    ])


def _no_order_today(segment: str) -> np.ndarray:
    rate = ORDER_RATE[segment]
    return np.exp(-np.array([rate, rate * AT_RISK_RATE_FACTOR, 0.0]))


def no_order_probability(state: int, segment: str, *, window: int, action: str | None = None,
                         action_day: int = 0) -> float:
    """Exact P(no order in the `window` days from the alert) from the hidden state at the alert.

    The action (if any) acts from day `action_day` of the window (0 = the alert day) to its end.
    Same day order as the simulation: order first, then the state moves.
    """
    effect = TRUE_EFFECTS[segment][action] if action else 0.0
    plain, treated = _transition(segment, 0.0), _transition(segment, effect)
    quiet = _no_order_today(segment)
    v = np.zeros(3)
    v[state] = 1.0
    for day in range(window):
        v = v * quiet
        v = v @ (treated if action and day >= action_day else plain)
    return float(v.sum())


@dataclass
class World:
    """Every customer's hidden state and today's treatment, vectorised."""

    segments: np.ndarray  # str per customer
    state: np.ndarray  # int8 per customer
    rng: np.random.Generator
    effect: np.ndarray = field(init=False)  # today's action effect on the leaving hazard
    treated_until: np.ndarray = field(init=False)  # day index (exclusive) an action keeps working

    def __post_init__(self) -> None:
        n = len(self.segments)
        self.effect = np.zeros(n)
        self.treated_until = np.full(n, -1)
        self._rate = np.array([ORDER_RATE[s] for s in self.segments])
        self._enter = np.array([ENTER_RISK[s] for s in self.segments])

    def treat(self, index: int, *, action: str, until_day: int) -> None:
        self.effect[index] = TRUE_EFFECTS[str(self.segments[index])][action]
        self.treated_until[index] = until_day

    def step(self, day: int) -> np.ndarray:
        """One day: returns the number of orders per customer, then moves the hidden states.

        Visits of the day (drawn from the same state) are left in `self.visits`."""
        self.effect[self.treated_until <= day] = 0.0
        rate = np.where(self.state == CONTENT, self._rate,
                        np.where(self.state == AT_RISK, self._rate * AT_RISK_RATE_FACTOR, 0.0))
        orders = self.rng.poisson(rate)
        self.visits = self.rng.poisson(self._rate * np.take(np.array(VISIT_FACTOR), self.state))
        u = self.rng.random(len(self.state))
        leave_risk = LEAVE_AT_RISK * (1.0 - self.effect)
        recover = RECOVER + RECOVER_BOOST * self.effect
        new = self.state.copy()
        content, risk = self.state == CONTENT, self.state == AT_RISK
        new[content & (u < LEAVE_CONTENT)] = GONE
        new[content & (u >= LEAVE_CONTENT) & (u < LEAVE_CONTENT + self._enter)] = AT_RISK
        new[risk & (u < leave_risk)] = GONE
        new[risk & (u >= leave_risk) & (u < leave_risk + recover)] = CONTENT
        self.state = new
        return orders


# --- the fast scorer: logistic regression on order-history features ---------------------------

FEATURES = ("days_since_order", "orders_30", "orders_90", "orders_365", "gap_ratio", "treated_recently",
            *(f"segment_{s}" for s in SEGMENTS), "visits_7", "visits_30", "days_since_visit")


def features(orders: np.ndarray, day: int, segments: np.ndarray, treated_recently: np.ndarray,
             visits: np.ndarray | None = None) -> np.ndarray:
    """Features at the start of `day` from the per-day order (and visit) matrices [customers, days] (days < day only)."""
    past = orders[:, :day]
    n_days = past.shape[1]
    any_order = past > 0
    last = np.where(any_order.any(axis=1), n_days - 1 - np.argmax(any_order[:, ::-1], axis=1), -1)
    since = np.where(last >= 0, day - last, 400).astype(float)
    o30 = past[:, max(0, day - 30):].sum(axis=1)
    o90 = past[:, max(0, day - 90):].sum(axis=1)
    o365 = past[:, max(0, day - 365):].sum(axis=1)
    usual_gap = 365.0 / np.maximum(o365, 1)
    onehot = [(segments == s).astype(float) for s in SEGMENTS]
    if visits is None:
        visits = np.zeros_like(orders)
    vpast = visits[:, max(0, day - 60):day] > 0
    v_since = np.where(vpast.any(axis=1), vpast.shape[1] - np.argmax(vpast[:, ::-1], axis=1), 61).astype(float)
    return np.column_stack([np.minimum(since, 400), o30, o90, o365, np.minimum(since / usual_gap, 20),
                            treated_recently.astype(float), *onehot,
                            visits[:, max(0, day - 7):day].sum(axis=1), visits[:, max(0, day - 30):day].sum(axis=1),
                            v_since])


def no_order_labels(orders: np.ndarray, day: int, window: int) -> np.ndarray:
    """1 = no order in [day, day + window)."""
    return (orders[:, day:day + window].sum(axis=1) == 0).astype(int)


@dataclass
class Scorer:
    """A calibrated-enough logistic regression (it is a probability model, fitted on the label itself)."""

    model: object
    trained_day: int
    valid_roc_auc: float | None
    valid_pr_auc: float | None
    n_rows: int

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = X.copy()
        X[:, FEATURES.index("treated_recently")] = 0.0  # score as if untreated: "what if we do nothing?"
        return self.model.predict_proba(X)[:, 1]


def train_scorer(rows_X: list[np.ndarray], rows_y: list[np.ndarray], valid_X: np.ndarray | None,
                 valid_y: np.ndarray | None, *, day: int) -> Scorer:
    X, y = np.vstack(rows_X), np.concatenate(rows_y)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0)).fit(X, y)
    roc = pr = None
    if valid_X is not None and len(valid_y) and 0 < valid_y.sum() < len(valid_y):
        p = model.predict_proba(valid_X)[:, 1]
        roc, pr = float(roc_auc_score(valid_y, p)), float(average_precision_score(valid_y, p))
    return Scorer(model=model, trained_day=day, valid_roc_auc=roc, valid_pr_auc=pr, n_rows=len(y))
