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

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from crm_plugin.models import ChurnScore, Customer, LoopSnapshot
from crm_plugin.customers.selectors import owner_for_user, user_sees_everyone
from crm_plugin.loop.report import (
    ACTION_LABELS,
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


def _funnel_rows(rows: list[dict]) -> list[FunnelView]:
    return [
        FunnelView(
            owner=r["owner"], alerts=r["alerts"], acted=r["acted"],
            acted_share="—" if r["acted_share"] is None else f"{100 * r['acted_share']:.0f}%",
            acted_in_time=r["acted_in_time"], escalated=r["escalated"], outcomes_known=r["outcomes_known"],
            retained=r["retained"], churned=r["churned"],
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
    report = closed_loop_report_cached()
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
