"""`simulate`: run the demo shop forward day by day with the product in the loop, and compare what
the loop measured with the truth only the simulator knows (mlcore.simulation.world).

Per day: score every active customer (fast logistic regression on order history, retrained
weekly on the fed-back labels), run the real alert policy (control group included), deliver
through the outbox state machine, let simulated account managers act on a share of their
alerts (partly following the suggested next-best action) through `intervention_create`, run
escalations, record outcomes through `intervention_record_outcome` when an outcome window
closes, and move the simulated customers (who order or not, and leave or not).
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from pathlib import Path
from typing import Callable

import numpy as np
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.events.importing import customer_last_order_refresh
from crm_plugin.models import AccountOwner, Alert, ChurnScore, Customer, Event, Intervention, ModelVersion
from crm_plugin.loop import report as closed_loop
from crm_plugin.alerts.escalations import alert_escalations_create
from crm_plugin.alerts.outbox import alert_claim_for_delivery, alert_mark_sent
from crm_plugin.alerts.policy import alert_policy_apply
from demo.shop import demo_shop_generate
from crm_plugin.interventions.services import (
    customer_last_action_refresh,
    intervention_create,
    intervention_record_outcome,
)
from mlcore.simulation import world as W

UTC = dt_timezone.utc
SIM_PREFIX = "sim-"
HISTORY_DAYS = 365
ACTIVE_DAYS = 90  # customers with no order for this long are lapsed (a win-back case), not scored
RETRAIN_EVERY = 7
SIM_MODELS = ("fast", "logreg", "lightgbm", "tiny-bert")
MODEL_TEXT = {
    "fast": "the simulator's own logistic regression on order and visit history (recency, frequency 30/90/365, gap "
            "ratio, visits 7/30 days, days since visit, segment, treated flag set to 0 when scoring), retrained every 7 days",
    "logreg": "the product's logreg family: manage.py train's model_train_all every 7 days on the event log (champion "
              "rule), churn_scores_compute every day (leak-free snapshots, scored as if untreated, reasons)",
    "lightgbm": "the product's lightgbm family: manage.py train's model_train_all every 7 days on the event log "
                "(champion rule), churn_scores_compute every day (leak-free snapshots, scored as if untreated, reasons)",
    "tiny-bert": "the product's bert family on a tiny random BERT checkpoint (2 layers, for speed): model_train_all "
                 "every 7 days on the event log (champion rule), churn_scores_compute every day",
}
CUTOFF_STEP = 14


@dataclass
class SimulationConfig:
    days: int = 120
    customers: int = 5000
    seed: int = 1
    window: int = 30  # outcome window and label horizon, days
    act_share: float = 0.6  # of delivered alerts a manager acts on
    follow_share: float = 0.5  # of actions that follow the suggested next-best action when there is one
    # Of the other actions, the share where the manager tries any action at random instead of their
    # habit (0 = habit only, the default: habits already give every action at least 10% per segment;
    # one 5,000-customer run with 0.3 learnt no faster, see docs/simulation.md).
    explore_share: float = 0.0
    escalation_act_share: float = 0.5  # escalated alerts the manager then acts on
    # Who scores: "logreg" (default) / "lightgbm" / "tiny-bert" = the product itself:
    # `model_train_all` weekly on the event log (champion rule included) and `churn_scores_compute`
    # daily (snapshots, reasons); "fast" = the simulator's own logistic regression on its day
    # matrices (seconds a day, for many seeds).
    model: str = "logreg"

    def __post_init__(self) -> None:
        if self.model not in SIM_MODELS:
            raise CrmError(f"model must be one of {', '.join(SIM_MODELS)}, got {self.model!r}.", code="invalid_model")
        for name in ("act_share", "follow_share", "explore_share", "escalation_act_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise CrmError(f"{name.replace('_', '-')} must be a share between 0 and 1, got {value}.",
                               code="invalid_share")
    # With a 30-day label a content regular is at 0.34 already; at 0.6 the alerts reach more at-risk customers.
    band_high: float = 0.6
    band_medium: float = 0.3


@dataclass
class Episode:
    start: int
    customer: int  # index into the world
    state: int
    control: bool
    action: str | None = None
    action_day: int = 0
    alert_id: int = 0
    suggested: str | None = None


@dataclass
class SimulationResult:
    config: SimulationConfig
    data: dict = field(default_factory=dict)


def _check_database(replace: bool) -> None:
    real = Customer.objects.exclude(external_id__startswith="demo-").count()
    if real:
        raise CrmError(f"This database holds {real} customers that are not from the demo shop; simulate only runs in a "
                       "separate database (e.g. DATABASE_URL=sqlite:////tmp/simulation.sqlite3).", code="not_simulation_db")
    if Customer.objects.exists() and not replace:
        raise CrmError(f"This database already holds {Customer.objects.count()} demo customers; pass --replace to "
                       "replace them with a fresh simulation, or use a separate database.", code="not_empty")


def _day_start(day0: date, day: int) -> datetime:
    return datetime.combine(day0 + timedelta(days=day), datetime.min.time(), tzinfo=UTC)


def simulation_run(*, config: SimulationConfig, replace: bool = False, out: Callable[[str], None] = print,
                   plot_path: Path | None = None) -> SimulationResult:
    """Run the whole loop forward `config.days` days; returns true vs measured figures (JSON-ready)."""
    if config.days < config.window + 7:
        raise CrmError(f"Simulate at least {config.window + 7} days, so that outcomes come back and can be measured.",
                       code="too_short")
    _check_database(replace)
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    sim_start = date(2026, 1, 1)
    history_end = sim_start - timedelta(days=1)
    truth: dict[str, dict] = {}
    demo_shop_generate(customers=config.customers, days=HISTORY_DAYS, seed=config.seed, end_date=history_end,
                       replace=replace, truth=truth)
    # A previous run's digests and escalations (no customer left) and in-memory model versions.
    Alert.objects.filter(customer__isnull=True).delete()
    ModelVersion.objects.filter(name__startswith=SIM_PREFIX).delete()
    if config.model != "fast":
        # This database holds only the demo shop (checked above): a previous run's champion must not score day 0.
        ModelVersion.objects.all().delete()
    out(f"demo shop: {config.customers} customers, {HISTORY_DAYS} days of history to {history_end} "
        f"({time.perf_counter() - started:.0f}s)")
    manager = AccountOwner.objects.filter(is_manager=True).first()
    if manager is not None:
        AccountOwner.objects.filter(is_manager=False, manager__isnull=True).update(manager=manager)
    customers = list(Customer.objects.select_related("owner", "owner__user").order_by("pk"))
    index = {c.pk: i for i, c in enumerate(customers)}
    n = len(customers)
    segments = np.array([c.segment or "regular" for c in customers])
    total_days = HISTORY_DAYS + config.days + config.window
    orders = np.zeros((n, total_days), dtype=np.int16)
    visits = np.zeros((n, total_days), dtype=np.int16)
    history_start = sim_start - timedelta(days=HISTORY_DAYS)
    for cid, at in Event.objects.filter(kind=Event.Kind.ORDER).values_list("customer_id", "occurred_at"):
        d = (at.date() - history_start).days
        if 0 <= d < HISTORY_DAYS:
            orders[index[cid], d] += 1
    for cid, at in Event.objects.filter(kind=Event.Kind.VISIT, occurred_at__gte=_day_start(history_start, 0)).values_list(
            "customer_id", "occurred_at"):
        d = (at.date() - history_start).days
        if 0 <= d < HISTORY_DAYS:
            visits[index[cid], d] += 1
    # Hidden state at the start, from the demo shop's own hidden churn process.
    state = np.zeros(n, dtype=np.int8)
    start_dt = _day_start(sim_start, 0)
    for i, c in enumerate(customers):
        t = truth.get(c.external_id)
        if t is None:
            continue
        to_churn = (t["churn_at"] - start_dt).total_seconds() / 86400
        if to_churn <= 0:
            state[i] = W.GONE
        elif to_churn <= max(t["lead_days"], 30):
            state[i] = W.AT_RISK
    world = W.World(segments=segments, state=state, rng=np.random.default_rng(config.seed + 1))
    out(f"hidden state at {sim_start}: {int((state == 0).sum())} content, {int((state == 1).sum())} at risk, "
        f"{int((state == 2).sum())} gone")

    episodes: list[Episode] = []
    open_episode: dict[int, Episode] = {}
    treated_day = np.full(n, -10_000)
    weekly: list[dict] = []
    scorer: W.Scorer | None = None
    version: ModelVersion | None = None
    event_seq = 0
    aov = {"vip": Decimal("140.00"), "regular": Decimal("62.00"), "bargain_hunter": Decimal("34.00"), "new": Decimal("62.00")}
    pending_outcomes: dict[int, list[tuple[int, int]]] = defaultdict(list)  # day -> [(intervention id, episode idx)]
    suggestions_seen = Counter()
    with override_settings(CHURN_OUTCOME_DAYS=config.window, CHURN_BAND_HIGH=config.band_high,
                           CHURN_BAND_MEDIUM=config.band_medium):
        for t in range(config.days):
            day_index = HISTORY_DAYS + t
            as_of = _day_start(sim_start, t)
            # 1. weekly retraining on the fed-back labels, 2. daily scoring
            if config.model != "fast":
                n_scored = _product_day(t, as_of, config, weekly)
            elif scorer is None or t % RETRAIN_EVERY == 0:
                scorer = _retrain(orders, visits, day_index, segments, treated_day, config, as_of)
                version = ModelVersion.objects.create(
                    name=f"{SIM_PREFIX}{config.seed}-logreg-day{t:03d}", family="logreg",
                    artifact_path="simulation (in memory)", trained_as_of=as_of, horizon_days=config.window,
                    metrics={"roc_auc": scorer.valid_roc_auc, "pr_auc": scorer.valid_pr_auc, "rows": scorer.n_rows})
                weekly.append({"day": t, "valid_roc_auc": scorer.valid_roc_auc, "valid_pr_auc": scorer.valid_pr_auc,
                               "rows": scorer.n_rows})
            if config.model == "fast":  # daily scoring of active customers
                X = W.features(orders, day_index, segments, day_index - treated_day < config.window, visits)
                active = X[:, 0] <= ACTIVE_DAYS
                p = scorer.predict(X)
                _write_scores(customers, np.flatnonzero(active), p, version, as_of, config, X)
                n_scored = int(active.sum())
            # 3. the alert policy (control group inside), delivery through the outbox
            if t == 0:
                # Go-live: the first day's scores are the baseline, so customers who were
                # already high (mostly long gone) do not all alert at once; from day 1 the
                # policy alerts on crossings and sharp rises as in production.
                event_seq = _advance(world, orders, visits, day_index, customers, as_of, config, segments, aov, rng,
                                     event_seq)
                continue
            summary = alert_policy_apply(as_of=as_of)
            new_alerts = list(Alert.objects.filter(pk__in=summary.alert_ids, kind__in=closed_loop.RISK_KINDS)
                              .select_related("customer", "customer__owner", "customer__owner__user"))
            for alert in new_alerts:
                if alert.status == Alert.Status.PENDING:
                    claim = alert_claim_for_delivery(alert_id=alert.pk)
                    if claim is not None:
                        alert_mark_sent(alert=claim.alert, channel="simulation", ts=f"{t}.{alert.pk}")
            # 4. episodes (same grouping as closed_loop) and the managers' actions
            for alert in sorted(new_alerts, key=lambda a: a.pk):
                i = index[alert.customer_id]
                ep = open_episode.get(i)
                if ep is None or t >= ep.start + config.window:
                    ep = Episode(start=t, customer=i, state=int(world.state[i]), control=alert.is_control, alert_id=alert.pk)
                    suggestion = (alert.payload or {}).get("next_best_action") or {}
                    ep.suggested = suggestion.get("action")
                    episodes.append(ep)
                    open_episode[i] = ep
                if alert.is_control or ep.action is not None:
                    continue
                if rng.random() < config.act_share:
                    delay = int(rng.integers(0, 3))  # today, tomorrow or the day after
                    _plan_action(ep, alert, t + delay, rng, config, suggestions_seen)
            for ep in episodes:
                if ep.action is not None and ep.action_day == t - ep.start and not getattr(ep, "_done", False):
                    _act(ep, customers, world, t, as_of, config, pending_outcomes, len(episodes), episodes, treated_day,
                         HISTORY_DAYS)
            # 5. escalations: the manager acts on some of them
            esc = alert_escalations_create(as_of=as_of)
            for alert in Alert.objects.filter(pk__in=esc.alert_ids).select_related("customer"):
                i = index[alert.customer_id]
                ep = open_episode.get(i)
                if ep is not None and ep.action is None and rng.random() < config.escalation_act_share:
                    _plan_action(ep, alert, t, rng, config, suggestions_seen)
                    _act(ep, customers, world, t, as_of, config, pending_outcomes, 0, episodes, treated_day, HISTORY_DAYS)
            # 6. the customers live their day; new orders are written as events
            event_seq = _advance(world, orders, visits, day_index, customers, as_of, config, segments, aov, rng,
                                 event_seq)
            # 7. outcomes whose window closed today are recorded by the simulated owners
            for intervention_id, ep_index in pending_outcomes.pop(t, []):
                ep = episodes[ep_index]
                window = orders[ep.customer, HISTORY_DAYS + ep.start:HISTORY_DAYS + ep.start + config.window]
                outcome = Intervention.Outcome.CHURNED if window.sum() == 0 else Intervention.Outcome.RETAINED
                iv = intervention_record_outcome(intervention=Intervention.objects.get(pk=intervention_id), by=None,
                                                 outcome=outcome, note="simulated follow-up")
                Intervention.objects.filter(pk=iv.pk).update(outcome_at=_day_start(sim_start, t + 1))
            if t % 10 == 0 or t == config.days - 1:
                out(f"day {t:3d} {as_of:%Y-%m-%d}: {n_scored} scored, {summary.immediate + summary.digested} alerted, "
                    f"{summary.held_out} held out, {esc.escalated} escalated; {int((world.state == W.AT_RISK).sum())} at risk, "
                    f"{int((world.state == W.GONE).sum())} gone ({time.perf_counter() - started:.0f}s)")
        end = _day_start(sim_start, config.days)
        data = _results(config, episodes, end, weekly, started, segments)
        data["manager_choices"] = {k: suggestions_seen[k] for k in ("followed", "explored", "habit")}
    if plot_path is not None:
        plot_path.write_text(_svg(data), encoding="utf-8")
        data["plot"] = str(plot_path)
    return SimulationResult(config=config, data=data)


def _advance(world, orders, visits, day_index, customers, as_of, config, segments, aov, rng, event_seq) -> int:
    """The customers live one day; their orders and visits are written as events."""
    today = world.step(day_index)
    orders[:, day_index] = today
    visits[:, day_index] = world.visits
    return _write_orders(customers, today, world.visits, as_of, config.seed, event_seq, segments, aov, rng)


def _product_day(t: int, as_of: datetime, config: SimulationConfig, weekly: list[dict]) -> int:
    """The product's own weekly training (champion rule included) and daily scoring; customers scored."""
    from crm_plugin.scoring import services as ml
    from crm_plugin.scoring import runs as scoring_runs
    if t % RETRAIN_EVERY == 0 or ml.champion_get() is None:
        family = "bert" if config.model == "tiny-bert" else config.model
        (version,) = ml.model_train_all(as_of=as_of, families=[family], horizon_days=config.window,
                                        tiny_bert=config.model == "tiny-bert", max_train_minutes=2.0)
        champion = ml.champion_get()
        weekly.append({"day": t, "valid_roc_auc": version.metrics.get("roc_auc"),
                       "valid_pr_auc": version.metrics.get("pr_auc"), "rows": (version.params.get("fit_report") or {}).get("n_train"),
                       "promoted": champion is not None and champion.pk == version.pk})
    return scoring_runs.churn_scores_compute(as_of=as_of).n_customers


def _retrain(orders, visits, day_index, segments, treated_day, config, as_of) -> W.Scorer:
    """Rows at cutoffs every CUTOFF_STEP days whose label window has closed; validation = the latest one."""
    cutoffs = list(range(day_index - config.window, 90, -CUTOFF_STEP))
    rows_X, rows_y = [], []
    valid_X = valid_y = None
    for k, c in enumerate(cutoffs[:12]):
        X = W.features(orders, c, segments, (c - treated_day >= 0) & (c - treated_day < config.window), visits)
        y = W.no_order_labels(orders, c, config.window)
        keep = X[:, 0] <= ACTIVE_DAYS
        if k == 0:
            valid_X, valid_y = X[keep], y[keep]
        else:
            rows_X.append(X[keep])
            rows_y.append(y[keep])
    # Recorded outcomes are the same as behaviour here (owners report truthfully), so the
    # behavioural label already carries them; treatment is a feature, set to 0 when scoring.
    return W.train_scorer(rows_X or [valid_X], rows_y or [valid_y], valid_X, valid_y, day=day_index)


def _write_scores(customers, idx, p, version, as_of, config, X) -> None:
    rows = []
    for i in idx:
        prob = float(p[i])
        band = "high" if prob >= config.band_high else "medium" if prob >= config.band_medium else "low"
        since = int(X[i, 0])
        rows.append(ChurnScore(customer_id=customers[i].pk, model_version=version, as_of=as_of, probability=prob,
                               band=band, reasons=[{"code": "recency", "text": f"no order for {since} days",
                                                    "weight": 1.0, "evidence": None}]))
    ChurnScore.objects.bulk_create(rows, batch_size=2000)


def _plan_action(ep: Episode, alert: Alert, day: int, rng, config, seen: Counter) -> None:
    segment = alert.customer.segment or "regular"
    suggestion = ((alert.payload or {}).get("next_best_action") or {}).get("action") if alert.kind != Alert.Kind.ESCALATION else ep.suggested
    if suggestion and suggestion in W.ACTIONS and rng.random() < config.follow_share:
        action = suggestion
        seen["followed"] += 1
    elif config.explore_share and rng.random() < config.explore_share:
        action = str(rng.choice(W.ACTIONS))
        seen["explored"] += 1
    else:
        habit = W.HABIT.get(segment, W.HABIT["regular"])
        action = str(rng.choice(list(habit), p=list(habit.values())))
        seen["habit"] += 1
    ep.action, ep.action_day = action, day - ep.start
    ep._alert = alert  # type: ignore[attr-defined]


def _act(ep, customers, world, t, as_of, config, pending_outcomes, _n, episodes, treated_day, history_days) -> None:
    if getattr(ep, "_done", False):
        return
    ep._done = True
    customer = customers[ep.customer]
    alert = getattr(ep, "_alert", None)
    owner = customer.owner
    iv = intervention_create(customer=customer, by=owner.user if owner else None, action=ep.action,
                             note="simulated", source=Intervention.Source.SIMULATION,
                             alert=alert if alert is not None and alert.customer_id == customer.pk else None)
    Intervention.objects.filter(pk=iv.pk).update(created_at=as_of + timedelta(hours=10))
    customer_last_action_refresh(customer_ids=[customer.pk])  # dated in the simulated day, not today
    world.treat(ep.customer, action=ep.action, until_day=history_days + ep.start + config.window)
    treated_day[ep.customer] = history_days + t
    pending_outcomes[ep.start + config.window - 1].append((iv.pk, episodes.index(ep)))


def _write_orders(customers, today, visits, as_of, seed, seq, segments, aov, rng) -> int:
    rows = []
    for i in np.flatnonzero(visits):
        for _ in range(int(visits[i])):
            seq += 1
            rows.append(Event(customer_id=customers[i].pk, kind=Event.Kind.VISIT,
                              occurred_at=as_of + timedelta(hours=float(rng.uniform(7, 23))),
                              attributes={"pages": int(rng.integers(1, 12)), "duration_s": int(rng.integers(20, 900))},
                              source_id=f"sim-{seed}-visit-{seq}"))
    for i in np.flatnonzero(today):
        for _ in range(int(today[i])):
            seq += 1
            at = as_of + timedelta(hours=float(rng.uniform(7, 23)))
            rows.append(Event(customer_id=customers[i].pk, kind=Event.Kind.ORDER, occurred_at=at,
                              amount=aov[str(segments[i])], quantity=1,
                              attributes={"order_id": f"sim-{seed}-{seq}", "category": "simulated"},
                              source_id=f"sim-{seed}-order-{seq}"))
    Event.objects.bulk_create(rows, batch_size=2000)
    customer_last_order_refresh(customer_ids=[int(customers[i].pk) for i in np.flatnonzero(today)])
    return seq


# --- results ----------------------------------------------------------------------------------

def _results(config: SimulationConfig, episodes: list[Episode], end: datetime, weekly: list[dict], started: float,
             segments: np.ndarray) -> dict:
    frame = closed_loop.alert_episodes(as_of=end, outcome_days=config.window)
    known = set(frame["alert_id"].tolist())
    by_alert = {ep.alert_id: ep for ep in episodes}
    measured = closed_loop.retention_lift_measured(as_of=end, outcome_days=config.window)
    true_all, true_by_action = [], defaultdict(list)
    mismatched = 0
    for row in frame.itertuples(index=False):
        ep = by_alert.get(row.alert_id)
        if ep is None:
            mismatched += 1
            continue
        segment = row.segment or "regular"
        if ep.control:
            continue
        p0 = W.no_order_probability(ep.state, segment, window=config.window)
        acted = ep.action is not None and getattr(ep, "_done", False)
        p1 = p0 if not acted else W.no_order_probability(ep.state, segment, window=config.window,
                                                                    action=ep.action, action_day=ep.action_day)
        true_all.append(p0 - p1)
        if acted and row.action == ep.action:
            true_by_action[ep.action].append(p0 - p1)
    # Whether a suggestion was the truly best action needs no outcome, so every delivered alert
    # episode counts, including those whose outcome window is still open at the end.
    delivered = [ep for ep in episodes if not ep.control]
    alerted_segments = [str(segments[ep.customer]) for ep in delivered]
    # The best single action for everyone: the one with the largest average true effect over the alerted
    # (an oracle: it knows the truth, the next-best action does not).
    single = max(W.ACTIONS, key=lambda a: np.mean([W.TRUE_EFFECTS[s][a] for s in alerted_segments]) if alerted_segments else 0)

    def nba_counts(eps: list[Episode]) -> dict:
        """How often the suggestion was the truly best action, and the single action on the same alerts."""
        best = [W.true_best_action(str(segments[ep.customer])) for ep in eps]
        with_s = [(ep.suggested, b) for ep, b in zip(eps, best) if ep.suggested is not None]
        share = (lambda hits, total: hits / total if total else None)
        return {
            "alerts": len(eps), "alerts_with_a_suggestion": len(with_s),
            "suggestion_truly_best": share(sum(s == b for s, b in with_s), len(with_s)),
            # The fair comparison: the single action on exactly the alerts that got a suggestion.
            "best_single_action_truly_best_same_alerts": share(sum(single == b for _, b in with_s), len(with_s)),
            # Counting an alert without a suggestion as a miss.
            "suggestion_truly_best_of_all_alerts": share(sum(s == b for s, b in with_s), len(eps)),
            "best_single_action_truly_best": share(sum(single == b for b in best), len(eps)),
        }

    # The learning curve: outcomes arrive `window` days after an alert, so the first block has
    # nothing to learn from and later blocks learn from everything before them.
    blocks = [{"from_day": d, "to_day": min(d + config.window, config.days),
               **nba_counts([ep for ep in delivered if d <= ep.start < d + config.window])}
              for d in range(0, config.days, config.window)]
    nba_all = nba_counts(delivered)

    def lift_json(est, truth):
        return {"true": float(np.mean(truth)) if truth else None, "n_true": len(truth),
                "measured": est.absolute_lift, "low": est.lift_low, "high": est.lift_high,
                "enough_data": est.enough_data, "reason": est.reason,
                "treated_n": est.treated_n, "control_n": est.control_n,
                # None when there is nothing to check (not enough data, or no truth), else True/False.
                "covered": (bool(est.lift_low <= float(np.mean(truth)) <= est.lift_high)
                            if est.enough_data and truth else None)}

    data = {
        "config": config.__dict__,
        "model": MODEL_TEXT[config.model],
        "episodes_known": len(frame), "episodes_total": len(episodes),
        # Who the alerts reached, by hidden state at the alert: only at-risk customers can be saved.
        "alerted_state_share": {name: float(np.mean([ep.state == k for ep in episodes])) if episodes else None
                                for k, name in ((W.CONTENT, "content"), (W.AT_RISK, "at_risk"), (W.GONE, "gone"))},
        "lift_overall": lift_json(measured.overall, true_all),
        "lift_by_action": {a: lift_json(e, true_by_action.get(a, [])) for a, e in measured.by_action.items()},
        "lift_by_segment": {s: {"measured": e.absolute_lift, "low": e.lift_low, "high": e.lift_high,
                                "enough_data": e.enough_data} for s, e in measured.by_segment.items()},
        "next_best_action": {**nba_all, "best_single_action": single, "learner": closed_loop.NBA_LEARNER,
                             "by_period": blocks},
        "model_quality_by_week": weekly,
        "funnel": [r.as_dict() for r in closed_loop.alert_funnel_by_owner(as_of=end, outcome_days=config.window)],
        "unmatched_episodes": mismatched,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return data


def simulation_report_text(data: dict) -> str:
    """The printed summary."""
    def pts(x):
        return "n/a" if x is None else f"{100 * x:+.1f}"

    lines = [f"model: {data['model']}",
             f"episodes with a known outcome: {data['episodes_known']} of {data['episodes_total']}; hidden state at "
             "the alert: " + ", ".join(f"{k} {v:.0%}" for k, v in data["alerted_state_share"].items() if v is not None), "",
             "retention lift (points of churn prevented): true vs measured [95% CI]"]
    o = data["lift_overall"]
    lines.append(f"  overall        true {pts(o['true'])}  measured {pts(o['measured'])} [{pts(o['low'])}, {pts(o['high'])}]"
                 f"  n={o['treated_n']} vs {o['control_n']} held out  {'covered' if o['covered'] else 'NOT covered' if o['enough_data'] else o['reason']}")
    for a, e in data["lift_by_action"].items():
        lines.append(f"  {a:<14} true {pts(e['true'])}  measured {pts(e['measured'])} [{pts(e['low'])}, {pts(e['high'])}]"
                     f"  n={e['treated_n']}  {'covered' if e['covered'] else 'NOT covered' if e['enough_data'] else e['reason']}")
    nba = data["next_best_action"]

    def pct(x):
        return "n/a" if x is None else f"{x:.0%}"

    lines += ["", f"next-best action (truly best = the action with the largest true effect for the customer's segment; "
                  f"best single action for everyone: {nba['best_single_action']}):"]
    for label, part in (("whole run", nba), *((f"days {b['from_day']}-{b['to_day'] - 1}", b) for b in nba["by_period"])):
        lines.append(f"  {label:<12} suggestion truly best {pct(part['suggestion_truly_best'])} vs single action "
                     f"{pct(part['best_single_action_truly_best_same_alerts'])} on the {part['alerts_with_a_suggestion']} "
                     f"alerts with a suggestion; of all {part['alerts']} alerts {pct(part['suggestion_truly_best_of_all_alerts'])} "
                     f"vs {pct(part['best_single_action_truly_best'])}")
    choices = data.get("manager_choices")
    if choices:
        cfg = data["config"]
        lines.append(f"  managers' actions: {choices['followed']} followed the suggestion (share {cfg['follow_share']:.0%} "
                     f"when there is one), {choices['explored']} tried an action at random (explore share "
                     f"{cfg['explore_share']:.0%}), {choices['habit']} their habit")
    lines += ["", "model quality (out-of-time validation at each weekly retrain):"]
    for w in data["model_quality_by_week"]:
        roc = "n/a" if w["valid_roc_auc"] is None else f"{w['valid_roc_auc']:.3f}"
        pr = "n/a" if w["valid_pr_auc"] is None else f"{w['valid_pr_auc']:.3f}"
        promoted = {True: ", promoted to champion", False: ", champion kept"}.get(w.get("promoted"), "")
        lines.append(f"  day {w['day']:3d}: ROC-AUC {roc}, PR-AUC {pr} ({w['rows']} rows{promoted})")
    lines += ["", "funnel per owner: alerts -> acted (in time) -> escalated -> outcomes (retained/churned)"]
    for f in data["funnel"]:
        lines.append(f"  {f['owner']:<14} {f['alerts']:5d} -> {f['acted']:4d} ({f['acted_in_time']}) -> {f['escalated']:3d} "
                     f"-> {f['outcomes_known']} ({f['retained']}/{f['churned']})")
    lines.append(f"\n{data['seconds']:.0f}s")
    return "\n".join(lines)


def _svg(data: dict) -> str:
    """True vs measured lift with 95% intervals, overall and per action, as a small SVG."""
    items = [("overall", data["lift_overall"])] + list(data["lift_by_action"].items())
    items = [(k, v) for k, v in items if v["measured"] is not None]
    width, row, left, top = 640, 34, 130, 40
    height = top + row * len(items) + 50
    lo = min([0.0] + [v["low"] for _, v in items] + [v["true"] or 0 for _, v in items])
    hi = max([0.05] + [v["high"] for _, v in items] + [v["true"] or 0 for _, v in items])
    lo, hi = math.floor(lo * 20) / 20, math.ceil(hi * 20) / 20

    def x(v):
        return left + (v - lo) / (hi - lo) * (width - left - 30)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<text x="10" y="20" font-size="14">Retention lift: measured (95% CI, blue) vs true (red), {data["config"]["days"]} days, '
             f'{data["config"]["customers"]} customers, seed {data["config"]["seed"]}</text>']
    tick = lo
    while tick <= hi + 1e-9:
        parts.append(f'<line x1="{x(tick):.1f}" y1="{top - 5}" x2="{x(tick):.1f}" y2="{height - 40}" stroke="#ddd"/>'
                     f'<text x="{x(tick):.1f}" y="{height - 25}" text-anchor="middle">{100 * tick:+.0f}</text>')
        tick += 0.05
    parts.append(f'<text x="{(left + width) / 2:.0f}" y="{height - 8}" text-anchor="middle">points of churn prevented</text>')
    for k, (name, v) in enumerate(items):
        y = top + row * k + row / 2
        parts.append(f'<text x="{left - 8}" y="{y + 4:.0f}" text-anchor="end">{name} (n={v["treated_n"]})</text>')
        parts.append(f'<line x1="{x(v["low"]):.1f}" y1="{y:.0f}" x2="{x(v["high"]):.1f}" y2="{y:.0f}" stroke="#1f6fb4" stroke-width="3"/>')
        parts.append(f'<circle cx="{x(v["measured"]):.1f}" cy="{y:.0f}" r="4" fill="#1f6fb4"/>')
        if v["true"] is not None:
            parts.append(f'<line x1="{x(v["true"]):.1f}" y1="{y - 9:.0f}" x2="{x(v["true"]):.1f}" y2="{y + 9:.0f}" stroke="#c0392b" stroke-width="3"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def simulation_write_json(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
