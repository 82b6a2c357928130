"""The closed loop read from the database: measured retention lift, the alert -> action -> outcome
funnel per owner, and the next-best action per customer (statistics from mlcore.uplift).

An *episode* is one risk alert (delivered or held out) and the `outcome_days` after it. Its
outcome is the recorded one when someone logged retained/churned for an action in the window,
else the behaviour: churned when the customer placed no order in the window. Held-out and
alerted customers are measured the same way, so the comparison stays fair. An alert that
falls inside an earlier episode of the same customer belongs to that episode.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from django.conf import settings
from django.db.models import Count, FloatField, Max, OuterRef, Q, Subquery
from django.db.models.functions import Cast
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.models import AccountOwner, Alert, ChurnScore, Customer, Event, Intervention
from mlcore.profit import ThresholdChoice, profit_threshold
from mlcore.uplift import EvidenceRule, LiftBreakdown, NextBestActionModel, Recommendation, retention_lift_breakdown

RISK_KINDS = (Alert.Kind.HIGH_RISK, Alert.Kind.SHARP_RISE)
NBA_FEATURES = ("probability", "value")
# One model over held-out and all actions with action x segment (see mlcore.uplift.next_best_action):
# in the simulation it found the truly best action far more often than per-action T-learner models.
NBA_LEARNER = "pooled"
ACTION_LABELS = {value: label.lower() for value, label in Intervention.Action.choices}
# Actions that count as retention work for lift and next-best action ("other" is too vague to suggest).
SUGGESTIBLE = tuple(a for a in Intervention.Action.values if a != Intervention.Action.OTHER)


# Ten years is past any outcome worth measuring, and far from the dates Python cannot represent.
MAX_OUTCOME_DAYS = 3650


def _outcome_days(outcome_days: int | None) -> int:
    days = settings.CHURN_OUTCOME_DAYS if outcome_days is None else outcome_days
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_OUTCOME_DAYS:
        raise CrmError(f"The outcome window must be between 1 and {MAX_OUTCOME_DAYS:,} days, not {days!r}.",
                       code="invalid_days")
    return days


def alert_episodes(*, as_of: datetime | None = None, outcome_days: int | None = None,
                   known_only: bool = True) -> pd.DataFrame:
    """One row per alert episode: who, when, held out or not, the first action and the outcome.

    Columns: alert_id, customer_id, owner_id, segment, is_control, probability, risk_band, value,
    alerted_at, action (None when nobody acted), acted_at, escalated, outcome_known, churned (0/1,
    NaN while unknown), outcome_source ("recorded" or "behaviour"). With `known_only` only episodes
    whose window has closed by `as_of` (or that carry a recorded outcome) are returned.
    """
    as_of = as_of or timezone.now()
    if timezone.is_naive(as_of):
        raise CrmError("as_of must be timezone-aware.", code="naive_datetime")
    days = _outcome_days(outcome_days)
    window = timedelta(days=days)
    rows = list(
        Alert.objects.filter(kind__in=RISK_KINDS, customer__isnull=False, score__isnull=False, score__as_of__lt=as_of)
        .order_by("customer_id", "score__as_of", "pk")
        .values_list("pk", "customer_id", "owner_id", "customer__segment", "is_control", "score__probability",
                     "score__band", "customer__value", "score__as_of")
    )
    episodes = []
    last_start: dict[int, datetime] = {}
    for pk, cid, owner_id, segment, control, probability, band, value, at in rows:
        start = last_start.get(cid)
        if start is not None and at < start + window:
            continue  # same episode as the earlier alert
        last_start[cid] = at
        episodes.append(dict(alert_id=pk, customer_id=cid, owner_id=owner_id, segment=segment or "",
                             is_control=bool(control), probability=float(probability), risk_band=band,
                             value=float(value or 0), alerted_at=at))
    columns = ["alert_id", "customer_id", "owner_id", "segment", "is_control", "probability", "risk_band", "value",
               "alerted_at", "action", "acted_at", "escalated", "outcome_known", "churned", "outcome_source"]
    if not episodes:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(episodes)
    ids = frame["customer_id"].unique().tolist()
    first = frame["alerted_at"].min()
    actions: dict[int, list[tuple]] = {}
    for cid, action, created, outcome, outcome_at in (
        Intervention.objects.filter(customer_id__in=ids, created_at__gte=first)
        .order_by("created_at", "pk").values_list("customer_id", "action", "created_at", "outcome", "outcome_at")
    ):
        actions.setdefault(cid, []).append((action, created, outcome, outcome_at))
    orders: dict[int, list[datetime]] = {}
    for cid, at in (Event.objects.filter(customer_id__in=ids, kind=Event.Kind.ORDER, occurred_at__gte=first)
                    .values_list("customer_id", "occurred_at")):
        orders.setdefault(cid, []).append(at)
    escalated = set(Alert.objects.filter(kind=Alert.Kind.ESCALATION, idempotency_key__startswith="escalation:")
                    .values_list("idempotency_key", flat=True))

    action_col, acted_col, known_col, churned_col, source_col, esc_col = [], [], [], [], [], []
    for row in frame.itertuples(index=False):
        start, end = row.alerted_at, row.alerted_at + window
        taken = [a for a in actions.get(row.customer_id, []) if start <= a[1] < end]
        action, acted_at, recorded = None, None, None
        if taken:
            action, acted_at = taken[0][0], taken[0][1]
            final = [a for a in taken if a[2] in (Intervention.Outcome.RETAINED, Intervention.Outcome.CHURNED)]
            if final:
                recorded = final[-1][2] == Intervention.Outcome.CHURNED
        if recorded is not None:
            known, churned, source = True, float(recorded), "recorded"
        elif end <= as_of:
            ordered = any(start <= at < end for at in orders.get(row.customer_id, []))
            known, churned, source = True, float(not ordered), "behaviour"
        else:
            known, churned, source = False, np.nan, ""
        action_col.append(action)
        acted_col.append(acted_at)
        known_col.append(known)
        churned_col.append(churned)
        source_col.append(source)
        esc_col.append(f"escalation:{row.alert_id}" in escalated)
    frame["action"] = action_col
    frame["acted_at"] = acted_col
    frame["escalated"] = esc_col
    frame["outcome_known"] = known_col
    frame["churned"] = churned_col
    frame["outcome_source"] = source_col
    if known_only:
        frame = frame[frame["outcome_known"]].reset_index(drop=True)
    return frame[columns]


def _lift_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["churned"] = out["churned"].astype(int)
    out["is_control"] = out["is_control"].astype(bool)
    # "other" is logged but is no comparable treatment; the alert still counts in `overall`.
    out["action"] = out["action"].where(out["action"].isin(SUGGESTIBLE), None)
    return out


def retention_lift_measured(*, as_of: datetime | None = None, outcome_days: int | None = None,
                            confidence: float = 0.95, episodes: pd.DataFrame | None = None) -> LiftBreakdown:
    """Churn of alerted vs held-out customers: overall (randomised), per action (standardised on
    segment, since managers choose actions by segment) and per segment, each with its interval or
    the reason there is not enough data yet."""
    frame = alert_episodes(as_of=as_of, outcome_days=outcome_days) if episodes is None else episodes
    frame = _lift_frame(frame) if len(frame) else pd.DataFrame({c: [] for c in ("is_control", "churned", "action", "segment")})
    if not len(frame):
        frame = frame.astype({"is_control": bool, "churned": int})
    return retention_lift_breakdown(frame, confidence=confidence, min_n=settings.UPLIFT_MIN_N,
                                    min_events=settings.UPLIFT_MIN_EVENTS, adjust_for=("segment",))


@dataclass(frozen=True)
class FunnelRow:
    """One owner's alerts, how many were acted on, escalated, and what came of them."""

    owner_id: int | None
    owner: str
    alerts: int  # delivered (not held-out) risk alert episodes
    acted: int
    acted_in_time: int  # within CHURN_ESCALATION_DAYS
    escalated: int
    outcomes_known: int
    retained: int
    churned: int

    @property
    def acted_share(self) -> float | None:
        return self.acted / self.alerts if self.alerts else None

    def as_dict(self) -> dict:
        return {**self.__dict__, "acted_share": self.acted_share}


def alert_funnel_by_owner(*, as_of: datetime | None = None, outcome_days: int | None = None,
                          episodes: pd.DataFrame | None = None) -> list[FunnelRow]:
    """Alert -> action -> outcome per owner (delivered alerts only; held-out ones are nobody's to act on).

    `episodes`: `alert_episodes(known_only=False)` already read by the caller."""
    frame = alert_episodes(as_of=as_of, outcome_days=outcome_days, known_only=False) if episodes is None else episodes
    names = dict(AccountOwner.objects.values_list("pk", "name"))
    if not len(frame):
        return []
    frame = frame[~frame["is_control"].astype(bool)]
    in_time = timedelta(days=settings.CHURN_ESCALATION_DAYS)
    rows = []
    for owner_id, part in frame.groupby(frame["owner_id"].fillna(-1), sort=False):
        acted = part["action"].notna()
        quick = acted & part.apply(lambda r: r["acted_at"] is not None and r["acted_at"] - r["alerted_at"] <= in_time, axis=1)
        known = part["outcome_known"].astype(bool)
        churned = (part["churned"] == 1) & known & acted
        rows.append(FunnelRow(
            owner_id=None if owner_id == -1 else int(owner_id), owner=names.get(int(owner_id), "no owner"),
            alerts=len(part), acted=int(acted.sum()), acted_in_time=int(quick.sum()),
            escalated=int(part["escalated"].sum()), outcomes_known=int((known & acted).sum()),
            retained=int(((part["churned"] == 0) & known & acted).sum()), churned=int(churned.sum()),
        ))
    rows.sort(key=lambda r: (-r.alerts, r.owner))
    return rows


def next_best_action_model(*, as_of: datetime | None = None, outcome_days: int | None = None,
                           learner: str = NBA_LEARNER, episodes: pd.DataFrame | None = None) -> NextBestActionModel:
    """A next-best-action model fitted on every known episode (actions vs the held-out group).

    `episodes`: the known episodes (`alert_episodes()`) already read by the caller."""
    frame = alert_episodes(as_of=as_of, outcome_days=outcome_days) if episodes is None else episodes
    rule = EvidenceRule(min_treated=settings.UPLIFT_MIN_N, min_control=settings.UPLIFT_MIN_N,
                        min_events=settings.UPLIFT_MIN_EVENTS)
    model = NextBestActionModel(feature_columns=NBA_FEATURES, rule=rule, learner=learner, action_labels=ACTION_LABELS)
    if not len(frame):
        frame = pd.DataFrame({"probability": [], "value": [], "action": [], "churned": [], "segment": [],
                              "is_control": []}).astype({"churned": int, "is_control": bool})
    else:
        frame = _lift_frame(frame)
    return model.fit(frame)


def _customer_rows(customers: list[Customer]) -> pd.DataFrame:
    # The newest score per customer by one index probe each, not their whole history (a row a day).
    newest = ChurnScore.objects.filter(customer_id=OuterRef("pk")).order_by("-as_of", "-pk").values("probability")[:1]
    latest = {}
    ids = [c.pk for c in customers]
    for start in range(0, len(ids), 2000):
        latest.update(Customer.objects.filter(pk__any_of=ids[start:start + 2000])
                      .annotate(p=Subquery(newest, output_field=FloatField())).values_list("pk", "p"))
    return pd.DataFrame({
        "probability": [np.nan if latest.get(c.pk) is None else latest[c.pk] for c in customers],
        "value": [float(c.value or 0) for c in customers],
        "segment": [c.segment or "" for c in customers],
    })


def next_best_actions(*, customers: list[Customer], model: NextBestActionModel | None = None) -> dict[int, Recommendation]:
    """The suggested action per customer (by pk), with its evidence in words."""
    if not customers:
        return {}
    model = model or next_best_action_model()
    recommendations = model.recommend_many(_customer_rows(customers))
    return {c.pk: r for c, r in zip(customers, recommendations)}


def next_best_action_for(*, customer: Customer, model: NextBestActionModel | None = None) -> Recommendation:
    """One customer's next-best action (for the Slack card and the customer page)."""
    return next_best_actions(customers=[customer], model=model)[customer.pk]


def recommendation_payload(recommendation: Recommendation) -> dict:
    """What an alert stores (and Slack shows) about the suggestion."""
    return {"action": recommendation.action,
            "label": ACTION_LABELS.get(recommendation.action or "", recommendation.action),
            "estimated_uplift": None if recommendation.estimated_uplift is None else round(recommendation.estimated_uplift, 4),
            "evidence": recommendation.evidence_text, "method": recommendation.method}


def _known(episodes: pd.DataFrame) -> pd.DataFrame:
    """What `alert_episodes(known_only=True)` returns, from the full frame."""
    if not len(episodes):
        return episodes
    return episodes[episodes["outcome_known"].astype(bool)].reset_index(drop=True)


def closed_loop_compute(*, as_of: datetime | None = None, outcome_days: int | None = None,
                        model: NextBestActionModel | None = None) -> tuple[dict, NextBestActionModel]:
    """The report (as `closed_loop_report`) and the fitted next-best-action model, reading the
    episodes once: the lift, the model and the funnel each read them, and that read is most of the cost.

    `model`: a next-best-action model already fitted on the known episodes (the daily job's, fitted
    for the alert policy), used instead of fitting it again."""
    as_of = as_of or timezone.now()
    episodes = alert_episodes(as_of=as_of, outcome_days=outcome_days, known_only=False)
    known = _known(episodes)
    lift = retention_lift_measured(as_of=as_of, outcome_days=outcome_days, episodes=known)
    model = model or next_best_action_model(as_of=as_of, outcome_days=outcome_days, episodes=known)
    alerted = known[~known["is_control"].astype(bool)] if len(known) else known
    report = {
        "as_of": as_of.isoformat(),
        "outcome_days": _outcome_days(outcome_days),
        "control_share": settings.CONTROL_GROUP_SHARE,
        # Yearly value of the alerted customers behind the overall lift: lift x this is what the
        # alerts kept, in money (the Impact page).
        "alerted_value": round(float(alerted["value"].sum()), 2) if len(alerted) else 0.0,
        "lift": lift.as_dict(),
        "lift_text": {
            "overall": lift.overall.summary("alerted"),
            "by_action": {a: e.summary(ACTION_LABELS.get(a, a)) for a, e in lift.by_action.items()},
            "by_segment": {s: e.summary(f"alerted {s or 'no segment'}") for s, e in lift.by_segment.items()},
        },
        "funnel": [row.as_dict() for row in alert_funnel_by_owner(as_of=as_of, outcome_days=outcome_days,
                                                                  episodes=episodes)],
        "next_best_action_evidence": model.evidence_summary(),
    }
    return report, model


def closed_loop_report(*, as_of: datetime | None = None, outcome_days: int | None = None) -> dict:
    """Everything the model report / API shows about the loop, JSON-ready."""
    return closed_loop_compute(as_of=as_of, outcome_days=outcome_days)[0]


def loop_data_fingerprint() -> str:
    """Changes when an alert or an action is added or an outcome recorded (2 small queries), or a
    loop setting changes: what the report and the next-best-action model are computed from."""
    alerts = Alert.objects.aggregate(last=Max("pk"), n=Count("pk"))
    actions = Intervention.objects.aggregate(
        last=Max("pk"), n=Count("pk"), last_outcome=Max("outcome_at"),
        churned=Count("pk", filter=Q(outcome=Intervention.Outcome.CHURNED)),
        retained=Count("pk", filter=Q(outcome=Intervention.Outcome.RETAINED)),
    )
    loop_settings = (settings.CHURN_OUTCOME_DAYS, settings.CHURN_ESCALATION_DAYS, settings.CONTROL_GROUP_SHARE,
                     settings.UPLIFT_MIN_N, settings.UPLIFT_MIN_EVENTS)
    raw = repr((sorted(alerts.items()), sorted(actions.items()), loop_settings))
    return hashlib.sha1(raw.encode()).hexdigest()


@dataclass(frozen=True)
class ProfitReport:
    choice: ThresholdChoice
    n_customers: int
    threshold_in_use: float


def profit_fingerprint() -> str:
    """Changes when scoring writes new rows (a new newest id) or a profit setting changes; a count
    would scan millions of score rows."""
    inputs = (ChurnScore.objects.aggregate(last=Max("pk"))["last"], settings.PROFIT_ACTION_COST,
              settings.PROFIT_SUCCESS_RATE, settings.PROFIT_VALUE_SHARE, settings.CHURN_BAND_HIGH)
    return hashlib.sha1(repr(inputs).encode()).hexdigest()


def profit_threshold_build() -> ProfitReport | bool:
    """The profit-optimal threshold over the latest scores of the customers the alert policy can alert
    (every stage but lapsed: counting them made the card promise alerts the policy never sends);
    False when nobody is scored (a cacheable "no", where None would mean "not cached")."""
    # Money as float here: the expected profit is an estimate, and 100,000 Decimals cost ~0.2 s.
    rows = list(
        Customer.objects.filter(latest_score__isnull=False).exclude(lifecycle_stage=Customer.Stage.LAPSED)
        .values_list("latest_score__probability", Cast("value", FloatField()))
    )
    if not rows:
        return False
    probabilities = [p for p, _ in rows]
    values = [v or 0.0 for _, v in rows]
    choice = profit_threshold(
        probabilities, values, action_cost=settings.PROFIT_ACTION_COST, success_rate=settings.PROFIT_SUCCESS_RATE,
        value_horizon_share=settings.PROFIT_VALUE_SHARE, current_threshold=settings.CHURN_BAND_HIGH,
    )
    return ProfitReport(choice=choice, n_customers=len(rows), threshold_in_use=settings.CHURN_BAND_HIGH)
