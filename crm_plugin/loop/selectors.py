"""Read side of the closed loop for the CRM pages: measured lift, profit threshold, funnel, next-best action.

The numbers come from the same services as `GET /api/lift/` and the Slack card
(`crm_plugin.loop.report`) and from `mlcore.profit`; this module only decides who
may see what and turns the results into rows a template can print without arithmetic.

Reading every alert episode and fitting the next-best-action model takes seconds once there
are thousands of alerts, too slow for any page view. They are computed ahead - by the daily job,
and by a queued refresh when the data they are built from changed (alerts, actions, recorded
outcomes and the loop settings: `loop_data_fingerprint`) - and stored (`LoopSnapshot`); pages
and Slack read the stored result, kept per process until the fingerprint changes. Orders are
left out of the fingerprint on purpose: they arrive all day, and an order only changes a result
once its outcome window has closed, i.e. as time passes. What the fingerprint cannot see
(windows closing, a late-imported order, an edited segment) is refreshed once a stored result is
older than `LOOP_CACHE_SECONDS`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import TruncWeek
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from crm_plugin.formatting import money
from crm_plugin.models import AccountOwner, Alert, ChurnScore, Customer, Intervention, LoopSnapshot
from crm_plugin.customers.selectors import owner_for_user, user_sees_everyone
from crm_plugin.loop.report import (
    ACTION_LABELS,
    RISK_KINDS,
    ProfitReport,
    loop_data_fingerprint,
    next_best_action_for,
    profit_fingerprint,
    profit_threshold_build,
)
from crm_plugin.loop.services import LoopComputed, closed_loop_refresh, loop_snapshot_contents
from crm_plugin.loop.tasks import loop_refresh
from mlcore.uplift import NextBestActionModel

LOOP_CACHE_SECONDS = 600
# One immediate retry (a pooled connection gone stale); more would keep the page waiting.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
logger = logging.getLogger(__name__)


def _cached(name: str, fingerprint: str, build):
    key = f"crm:loop:{name}:{fingerprint}"
    value = cache.get(key)
    if value is None:
        value = build()
        cache.set(key, value, LOOP_CACHE_SECONDS)
    return value


def _snapshot_for(fingerprint: str) -> LoopSnapshot:
    """The stored closed loop for the data as it is now, or the newest one while a refresh is queued.

    Stale (the data changed) or older than LOOP_CACHE_SECONDS (outcome windows close as time
    passes): a refresh is queued once per process and change, and this request gets what is
    stored. In-process (no broker: a laptop, the tests) the refresh runs right here, so the answer
    is current. With nothing stored yet (before the first daily job) it is computed here, once.
    """
    newest = LoopSnapshot.objects.order_by("-pk").first()
    old = newest is not None and (timezone.now() - newest.created_at).total_seconds() > LOOP_CACHE_SECONDS
    if newest is not None and newest.fingerprint == fingerprint and not old:
        return newest
    if cache.add(f"crm:loop:refresh-queued:{fingerprint}:{newest.pk if newest else 0}", True, LOOP_CACHE_SECONDS):
        try:
            # Bounded like every publish from a request: a dead broker must not turn a page into a
            # slow 500; the page then shows what is stored and the next daily job refreshes it.
            loop_refresh.apply_async(kwargs={"asked_at": timezone.now().isoformat()}, ignore_result=True,
                                     retry=True, retry_policy=PUBLISH_RETRY_POLICY)
        except BrokerError as exc:
            logger.warning("broker unavailable, closed-loop refresh not queued (%s)", exc)
        newest = LoopSnapshot.objects.order_by("-pk").first()  # the refresh itself, when it ran in-process
    if newest is None:  # nothing stored yet and the worker has not got to it: this once, here
        newest = closed_loop_refresh()
    return newest


def _loop_current() -> tuple[dict, LoopComputed]:
    """(report, fitted model and profit threshold), kept in this process until the loop's data changes."""
    fingerprint = loop_data_fingerprint()

    def build():
        snapshot = _snapshot_for(fingerprint)
        return snapshot.report, loop_snapshot_contents(snapshot=snapshot)

    return _cached("snapshot", fingerprint, build)


def closed_loop_report_cached() -> dict:
    """`closed_loop_report()` (the `/api/lift/` payload) as stored by the daily job or the last refresh."""
    return _loop_current()[0]


def next_best_action_model_cached() -> NextBestActionModel:
    """The next-best-action model as fitted by the daily job or the last refresh (never in the request)."""
    return _loop_current()[1].model


def loop_report_visible(*, user: AbstractBaseUser) -> bool:
    """The lift and the funnel compare every owner's book: managers and staff only (as `/api/lift/`)."""
    return bool(user and user.is_authenticated and (user.is_staff or user_sees_everyone(user)))


# --- measured retention lift ------------------------------------------------------------


@dataclass(frozen=True)
class LiftRow:
    """One line of the lift table: treated vs held-out churn, the lift and its interval, or why not yet."""

    label: str
    treated: str  # "20.0% of 50"
    control: str  # "40.0% of 50"
    lift: str  # "+20.0 pts"
    interval: str  # "+1.2 to +37.1 pts"
    enough_data: bool
    clearly_positive: bool
    clearly_negative: bool
    reason: str
    summary: str  # the same sentence the API returns in lift_text


def _pct(rate) -> str:
    return "—" if rate is None else f"{100 * rate:.1f}%"


def _pts(value) -> str:
    return "—" if value is None else f"{100 * value:+.1f} pts"


def _lift_row(label: str, data: dict, summary: str) -> LiftRow:
    low, high = data.get("lift_low"), data.get("lift_high")
    return LiftRow(
        label=label,
        treated=f"{_pct(data['treated_churn_rate'])} of {data['treated_n']:,}",
        control=f"{_pct(data['control_churn_rate'])} of {data['control_n']:,}",
        lift=_pts(data.get("absolute_lift")),
        interval="—" if low is None or high is None else f"{100 * low:+.1f} to {100 * high:+.1f} pts",
        enough_data=bool(data["enough_data"]),
        clearly_positive=bool(data["clearly_positive"]),
        clearly_negative=bool(data["enough_data"] and high is not None and high < 0),
        reason=data.get("reason") or "",
        summary=summary,
    )


@dataclass(frozen=True)
class FunnelView:
    owner: str
    alerts: int
    acted: int
    acted_share: str
    acted_in_time: int
    escalated: int
    outcomes_known: int
    retained: int
    churned: int
    owner_id: int | None = None  # for links to the owner's logged actions; None for "no owner" and totals


def _share(part: int, whole: int) -> str:
    return "—" if not whole else f"{100 * part / whole:.0f}%"


def _funnel_rows(rows: list[dict]) -> list[FunnelView]:
    return [
        FunnelView(
            owner=r["owner"], alerts=r["alerts"], acted=r["acted"],
            acted_share="—" if r["acted_share"] is None else f"{100 * r['acted_share']:.0f}%",
            acted_in_time=r["acted_in_time"], escalated=r["escalated"], outcomes_known=r["outcomes_known"],
            retained=r["retained"], churned=r["churned"], owner_id=r.get("owner_id"),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class LoopReport:
    """What the model report shows about the closed loop, formatted so the template does no arithmetic."""

    confidence: float
    outcome_days: int
    control_share: float
    overall: LiftRow
    by_action: list[LiftRow]
    by_segment: list[LiftRow]
    control_treated_anyway: int
    funnel: list[FunnelView]
    evidence: list[dict]  # per action: counts and kept rates behind the next-best action
    relative_lift: float | None  # overall share of churn prevented, when measured with enough data
    episodes: int  # alert episodes with a known outcome (alerted + held out)


def loop_report(*, user: AbstractBaseUser) -> LoopReport | None:
    """The lift overall / per action / per segment and the funnel per owner, from `closed_loop_report`
    (the service behind `/api/lift/`, so the page and the API show the same numbers). None for users
    who may not see it."""
    if not loop_report_visible(user=user):
        return None
    return _loop_view(closed_loop_report_cached())


def _loop_view(report: dict) -> LoopReport:
    lift, text = report["lift"], report["lift_text"]
    overall = lift["overall"]
    evidence = []
    for item in report["next_best_action_evidence"]:
        evidence.append({
            **item, "label": ACTION_LABELS.get(item["action"], item["action"]),
            "kept_treated_text": _pct(item["kept_treated"]), "kept_baseline_text": _pct(item["kept_baseline"]),
        })
    return LoopReport(
        confidence=overall["confidence"],
        outcome_days=report["outcome_days"],
        control_share=report["control_share"],
        overall=_lift_row("All alerted customers", overall, text["overall"]),
        by_action=[_lift_row(ACTION_LABELS.get(a, a), data, text["by_action"][a]) for a, data in lift["by_action"].items()],
        by_segment=[_lift_row(s or "no segment", data, text["by_segment"][s]) for s, data in lift["by_segment"].items()],
        control_treated_anyway=lift["control_treated_anyway"],
        funnel=_funnel_rows(report["funnel"]),
        evidence=evidence,
        relative_lift=overall["relative_lift"] if overall["enough_data"] else None,
        episodes=overall["treated_n"] + overall["control_n"],
    )


def funnel_for_owner(*, user: AbstractBaseUser) -> list[FunnelView]:
    """An account owner's own alert -> action -> outcome line, or [] (owners do not see other books)."""
    owner = owner_for_user(user)
    if owner is None:
        return []
    return _funnel_rows([row for row in closed_loop_report_cached()["funnel"] if row["owner_id"] == owner.pk])


# --- where to draw the alert line --------------------------------------------------------


def profit_threshold_current() -> ProfitReport | None:
    """The profit-optimal alert threshold over the latest scores of the customers the alert policy
    can alert (every stage but lapsed: no order within the horizon gets no early warning), next to
    the one in use. Counting lapsed customers made the card promise alerts the policy never sends.

    The alert policy alerts on entering the high band, so the line in use is CHURN_BAND_HIGH.
    Value at stake: `Customer.value` (yearly spend) × PROFIT_VALUE_SHARE; cost and success rate
    from PROFIT_ACTION_COST and PROFIT_SUCCESS_RATE. None when nobody has been scored yet.
    The daily job stores it with the closed loop (reading every latest score is linear in the
    customers: ~0.4 s at 100,000); after a newer score or a settings change it is computed here
    and kept in this process. An edited customer value shows after at most LOOP_CACHE_SECONDS.
    """
    fingerprint = profit_fingerprint()

    def build():
        stored = _loop_current()[1]
        return stored.profit if stored.profit_fingerprint == fingerprint else profit_threshold_build()

    report = _cached("profit", fingerprint, build)
    return report or None


# --- next-best action on the customer page ----------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    """The customer page's next-best action: an action with its evidence, or why there is none."""

    action: str | None
    label: str
    evidence: str  # the recommendation's evidence in words, as in Slack
    uplift: str  # "+12 pts" when estimated
    why_not: str  # set when there is no suggestion
    alternatives: list[dict] = field(default_factory=list)


def next_best_action_for_page(*, customer: Customer) -> Suggestion:
    """The next-best action for a high-risk customer (same function as the Slack card and the alert),
    or a plain "no suggestion yet" with the reason. Access is checked by the caller's view."""
    score: ChurnScore | None = customer.latest_score
    if score is None:
        return Suggestion(action=None, label="", evidence="", uplift="",
                          why_not="this customer has not been scored yet.")
    if score.band != ChurnScore.Band.HIGH:
        return Suggestion(
            action=None, label="", evidence="", uplift="",
            why_not=(f"suggestions are made for high-risk customers (churn probability of at least "
                     f"{100 * settings.CHURN_BAND_HIGH:.0f}%); this one is at {100 * score.probability:.0f}%."),
        )
    recommendation = next_best_action_for(customer=customer, model=next_best_action_model_cached())
    alternatives = [
        {"label": ACTION_LABELS.get(a.action, a.action), "uplift": f"{100 * a.estimated_uplift:+.0f} pts",
         "evidence": a.evidence_text}
        for a in recommendation.alternatives if a.action != recommendation.action
    ]
    if recommendation.action is None:
        reason = recommendation.evidence_text.removeprefix("No recommendation yet: ")
        return Suggestion(action=None, label="", evidence="", uplift="", why_not=reason[:1].lower() + reason[1:])
    return Suggestion(
        action=recommendation.action, label=ACTION_LABELS.get(recommendation.action, recommendation.action),
        evidence=recommendation.evidence_text, uplift=f"{100 * recommendation.estimated_uplift:+.0f} pts",
        why_not="", alternatives=alternatives,
    )


# --- the Impact page: are the alerts working? -------------------------------------------
# Everything here is either the stored closed loop (lift, funnel: no query) or one grouped query per
# figure over the whole shop, so the page costs the same at 100 customers and at 100,000.

IMPACT_WEEKS = 12
# Risk alerts that reached their owner: sent as a DM, or rolled into the daily digest that was.
DELIVERED = (Alert.Status.SENT, Alert.Status.DIGESTED)


def lift_shortfall(*, overall: dict, control_share: float, outcome_days: int) -> str:
    """Why the overall lift is not measured yet, in counts a manager can follow ("Not enough outcomes
    yet — held out: 12 of 30 needed."), or "" once it is."""
    if overall["enough_data"]:
        return ""
    if control_share <= 0:
        return ("Nobody is held out (CONTROL_GROUP_SHARE is 0): every at-risk customer is alerted, so there is "
                "no group to compare the alerted customers with.")
    treated, control = overall["treated_n"], overall["control_n"]
    if not treated and not control:
        return (f"No outcomes yet: an alert's outcome is known {outcome_days} days after it, or as soon as its "
                "owner records one.")
    min_n, min_events = settings.UPLIFT_MIN_N, settings.UPLIFT_MIN_EVENTS
    churned = overall["treated_churned"] + overall["control_churned"]
    kept = treated + control - churned
    needs = []
    if control < min_n:
        needs.append(f"held out: {control:,} of {min_n:,} needed")
    if treated < min_n:
        needs.append(f"alerted: {treated:,} of {min_n:,} needed")
    if churned < min_events:
        needs.append(f"churned: {churned:,} of {min_events:,} needed")
    if kept < min_events:
        needs.append(f"kept: {kept:,} of {min_events:,} needed")
    if not needs:  # the rule changed since the loop was computed; its own words then
        return overall.get("reason") or "Not enough outcomes yet."
    return "Not enough outcomes yet — " + "; ".join(needs) + "."


def _funnel_total(rows: list[FunnelView]) -> FunnelView:
    alerts, acted = sum(r.alerts for r in rows), sum(r.acted for r in rows)
    return FunnelView(
        owner="All owners", alerts=alerts, acted=acted, acted_share=_share(acted, alerts),
        acted_in_time=sum(r.acted_in_time for r in rows), escalated=sum(r.escalated for r in rows),
        outcomes_known=sum(r.outcomes_known for r in rows), retained=sum(r.retained for r in rows),
        churned=sum(r.churned for r in rows),
    )


def impact_funnel(*, funnel: list[dict]) -> tuple[list[FunnelView], FunnelView]:
    """The stored alert -> action -> outcome rows, plus a zero row for every owner with a book who got no
    alert yet (a quiet book is news too), and the total. One query: the owners with customers."""
    rows = _funnel_rows(funnel)
    listed = {r.owner_id for r in rows}
    books = (AccountOwner.objects.filter(Exists(Customer.objects.filter(owner=OuterRef("pk"))))
             .order_by("name", "pk").values_list("pk", "name"))
    rows += [FunnelView(owner=name, alerts=0, acted=0, acted_share="—", acted_in_time=0, escalated=0, outcomes_known=0,
                        retained=0, churned=0, owner_id=pk) for pk, name in books if pk not in listed]
    return rows, _funnel_total(rows)


@dataclass(frozen=True)
class RevenueKept:
    """Two answers to "how much revenue did we keep?", each in the shop's currency with what it counts."""

    recorded_value: str  # "€20,000": yearly value of customers whose latest recorded outcome is retained
    recorded_customers: int
    measured: bool  # the lift is measured, so the implied figures below are set
    implied_value: str  # lift x alerted_value: what the alerts kept that would otherwise have left
    implied_low: str
    implied_high: str
    alerted_value: str  # yearly value of the alerted customers with a known outcome
    alerted_customers: int
    lift_points: str  # "9.5 pts"


def revenue_recorded_retained() -> tuple[int, float]:
    """(customers, yearly value) of the customers whose latest recorded final outcome (retained or
    churned) is "retained": one query, whatever the number of customers."""
    final = (Intervention.Outcome.RETAINED, Intervention.Outcome.CHURNED)
    latest = (Intervention.objects.filter(customer=OuterRef("pk"), outcome__in=final)
              .order_by(F("outcome_at").desc(nulls_last=True), "-pk").values("outcome")[:1])
    retained = Intervention.objects.filter(customer=OuterRef("pk"), outcome=Intervention.Outcome.RETAINED)
    totals = (Customer.objects.filter(Exists(retained)).annotate(last=Subquery(latest))
              .filter(last=Intervention.Outcome.RETAINED).aggregate(n=Count("pk"), value=Sum("value")))
    return totals["n"] or 0, float(totals["value"] or 0)


def _revenue(report: dict) -> RevenueKept:
    customers, value = revenue_recorded_retained()
    overall = report["lift"]["overall"]
    alerted_value = report.get("alerted_value")  # absent from a loop stored before it was added
    measured = bool(overall["enough_data"] and overall["absolute_lift"] is not None and alerted_value is not None)
    lift = overall["absolute_lift"] or 0.0
    low, high = overall.get("lift_low"), overall.get("lift_high")
    return RevenueKept(
        recorded_value=money(value), recorded_customers=customers, measured=measured,
        implied_value=money(lift * alerted_value) if measured else "",
        implied_low=money(low * alerted_value) if measured and low is not None else "",
        implied_high=money(high * alerted_value) if measured and high is not None else "",
        alerted_value=money(alerted_value or 0), alerted_customers=overall["treated_n"],
        lift_points=f"{100 * lift:.1f} pts",
    )


@dataclass(frozen=True)
class WeekRow:
    """One ISO week: risk alerts sent and held out, actions logged, and what came of those actions."""

    start: date  # the Monday
    end: date  # the Sunday
    label: str  # "16 Feb"
    iso: str  # "2026-W08"
    current: bool
    alerts_sent: int
    held_out: int
    actions: int
    retained: int  # of the actions logged that week, outcome recorded as retained
    churned: int


def _week_of(value: datetime | date) -> date:
    if isinstance(value, datetime):
        value = timezone.localtime(value) if timezone.is_aware(value) else value
        value = value.date()
    return value - timedelta(days=value.weekday())


def impact_weeks(*, weeks: int = IMPACT_WEEKS, today: date | None = None) -> list[WeekRow]:
    """The last `weeks` ISO weeks (this one so far last), in the shop's time zone: two grouped queries.

    Alerts count in the week they were raised; outcomes in the week of the action they belong to, so a
    week's row reads alert -> action -> outcome and its counts match the interventions list filtered
    to those dates."""
    today = today or timezone.localdate()
    first = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)
    since = timezone.make_aware(datetime.combine(first, time.min))
    alerts = {
        _week_of(row["week"]): row for row in
        Alert.objects.filter(kind__in=RISK_KINDS, created_at__gte=since).annotate(week=TruncWeek("created_at"))
        .values("week").annotate(sent=Count("pk", filter=Q(is_control=False, status__in=DELIVERED)),
                                 held_out=Count("pk", filter=Q(is_control=True))).order_by()
    }
    actions = {
        _week_of(row["week"]): row for row in
        Intervention.objects.filter(created_at__gte=since).annotate(week=TruncWeek("created_at")).values("week")
        .annotate(n=Count("pk"), retained=Count("pk", filter=Q(outcome=Intervention.Outcome.RETAINED)),
                  churned=Count("pk", filter=Q(outcome=Intervention.Outcome.CHURNED))).order_by()
    }
    rows = []
    for index in range(weeks):
        start = first + timedelta(weeks=index)
        a, i = alerts.get(start, {}), actions.get(start, {})
        year, number, _ = start.isocalendar()
        rows.append(WeekRow(
            start=start, end=start + timedelta(days=6), label=f"{start.day} {start:%b}", iso=f"{year}-W{number:02d}",
            current=index == weeks - 1, alerts_sent=a.get("sent", 0), held_out=a.get("held_out", 0),
            actions=i.get("n", 0), retained=i.get("retained", 0), churned=i.get("churned", 0),
        ))
    return rows


@dataclass(frozen=True)
class ImpactReport:
    """Everything the Impact page shows, formatted so the template does no arithmetic."""

    loop: LoopReport
    shortfall: str  # why the overall lift is not measured yet, or ""
    funnel: list[FunnelView]
    funnel_total: FunnelView
    revenue: RevenueKept
    weeks: list[WeekRow]
    as_of: datetime | None  # the outcomes known at this time are counted (when the loop was computed)


def impact_report(*, user: AbstractBaseUser) -> ImpactReport | None:
    """Are the alerts working: measured lift, the funnel per owner, revenue kept, week by week.
    None for users who may not see it (it compares every owner's book: managers and staff only)."""
    if not loop_report_visible(user=user):
        return None
    report, _ = _loop_current()
    as_of = report.get("as_of")  # absent from a loop stored before it was added
    funnel, total = impact_funnel(funnel=report["funnel"])
    return ImpactReport(
        loop=_loop_view(report),
        shortfall=lift_shortfall(overall=report["lift"]["overall"], control_share=report["control_share"],
                                 outcome_days=report["outcome_days"]),
        funnel=funnel, funnel_total=total, revenue=_revenue(report), weeks=impact_weeks(),
        as_of=datetime.fromisoformat(as_of) if as_of else None,
    )
