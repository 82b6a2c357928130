"""Read-side queries behind the CRM pages: worklist, customer 360, interventions, model report.

Access control always starts from `selectors.customer_list_visible_to`. Per-row extras
(sparkline history, last alert, last action) are fetched for a whole page of customers in
one query each, so the number of queries never grows with the number of rows.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F, Max, Min, Q, QuerySet, Sum, Window
from django.db.models.functions import Coalesce, RowNumber, TruncDate
from django.utils import timezone

from crm_plugin.models import AccountOwner, Alert, BacktestRun, ChurnScore, Customer, Event, Intervention, ModelVersion
from crm_plugin.customers.selectors import (
    customer_list_visible_to, customer_search_match, owner_for_user, user_sees_everyone,
)
from crm_plugin.formatting import top_reason
from crm_plugin.web import charts
from mlcore.backtest import latest_cutoff
from mlcore.compare import CHAMPION_METRIC
from mlcore.snapshot import as_timestamp

SPARKLINE_POINTS = 10
# A rise (Customer.risk_change_7d, over 7 days) smaller than this is float noise or a re-score of unchanged data, not news.
RISE_MIN = 0.01
# "No action yet": nobody has logged an action for the customer in this many days.
NO_ACTION_WINDOW_DAYS = 30
HISTORY_POINTS = 120


# The worklist's orderings: key -> label. Each sorts on one column stored on Customer with an index in
# that order per lifecycle stage (crm_plugin.models.SortIndex), so a page of 1,000,000 customers is a
# walk down an index, not a join and sort of every row (docs/scale.md).
WORKLIST_SORTS = {
    "value": "Value at risk",
    "risk": "Churn risk",
    "change": "Change (7 days)",
    "yearly": "Yearly value",
    "last_order": "Last order",
    "last_action": "Last action",
}
_SORT_COLUMNS = {"value": "value_at_risk", "risk": "latest_probability", "change": "risk_change_7d",
                 "yearly": "value", "last_order": "last_order_at", "last_action": "last_action_at"}
# The stage the worklist opens on: active customers who may still be kept. "all" shows every stage.
DEFAULT_STAGE = Customer.Stage.AT_RISK
# The whole shop's tab counts are counted on every request up to this many customers (a few ms) and
# kept for a minute above it (worklist_stage_counts): at 100,000 counting was a third of a page's time.
STAGE_COUNTS_EXACT_UP_TO = 20_000
STAGE_COUNTS_CACHE_SECONDS = 60
STAGE_COUNTS_CACHE_KEY = "crm:worklist:stage-counts"
# A filtered list is counted up to this many customers ("10,000+ match"; 200 pages of 50).
WORKLIST_COUNT_CAP = 10_000


@dataclass(frozen=True)
class WorklistFilters:
    stage: str = DEFAULT_STAGE  # a Customer.Stage value, or "" for every stage
    sort: str = "value"
    descending: bool = True
    owner_id: int | None = None
    band: str = ""
    segment: str = ""
    risk_rose: bool = False
    no_action: bool = False
    q: str = ""

    @property
    def narrowed(self) -> bool:
        """Filtered beyond the stage and owner, so the tab's count is not the list's length."""
        return bool(self.band or self.segment or self.q or self.risk_rose or self.no_action)


def _worklist_order(filters: WorklistFilters, *, nulls_first: bool = False) -> list:
    """Descending: the sort column with empty values last, ties (no yearly value yet, the same score) to
    the riskier customer, then by id - the order of the column's index. Ascending: exactly the reverse,
    except that customers without a value stay last.

    `nulls_first` gives the ascending order as the index read backwards, for a part of the list that is
    all with or all without a value (where the two orders agree)."""
    name = _SORT_COLUMNS.get(filters.sort, "value_at_risk")
    columns = [name] if name == "latest_probability" else [name, "latest_probability"]
    if filters.descending:
        return [*(F(c).desc(nulls_last=True) for c in columns), "pk"]
    first, *ties = columns
    return [F(first).asc(nulls_first=True) if nulls_first else F(first).asc(nulls_last=True),
            *(F(c).asc(nulls_first=True) for c in ties), "-pk"]


def worklist_queryset(*, user: AbstractBaseUser, filters: WorklistFilters) -> QuerySet[Customer]:
    """Visible customers in one lifecycle stage (at risk by default), ordered by value at risk
    (latest probability x value) or the chosen column, unscored last."""
    return worklist_queryset_from(customer_list_visible_to(user=user), filters=filters)


def worklist_queryset_from(visible: QuerySet[Customer], *, filters: WorklistFilters) -> QuerySet[Customer]:
    """The worklist's filters and ranking over customers already limited to what a user may see
    (the CRM page and Slack's `/churn top` rank alike)."""
    qs = visible.select_related("owner", "latest_score")
    if filters.stage:
        qs = qs.filter(lifecycle_stage=filters.stage)
    if filters.owner_id:
        qs = qs.filter(owner_id=filters.owner_id)
    if filters.band:
        # The band of the stored latest probability by scoring's own rule (mlcore.scoring.band_of): a
        # range of a sort index instead of a join to every customer's score.
        high, medium = settings.CHURN_BAND_HIGH, settings.CHURN_BAND_MEDIUM
        band = {ChurnScore.Band.HIGH: Q(latest_probability__gte=high),
                ChurnScore.Band.MEDIUM: Q(latest_probability__gte=medium, latest_probability__lt=high),
                ChurnScore.Band.LOW: Q(latest_probability__lt=medium)}
        qs = qs.filter(band.get(filters.band, Q(latest_score__band=filters.band)))
    if filters.segment:
        qs = qs.filter(segment=filters.segment)
    if filters.q:
        qs = qs.filter(customer_search_match(filters.q))  # the same search as `/churn customer`
    if filters.risk_rose:
        # Stored by scoring (latest probability minus the earliest score in the 7 days before it),
        # so this is an indexed column test, not a score-history lookup per customer.
        qs = qs.filter(risk_change_7d__gte=RISE_MIN)
    if filters.no_action:
        # The stored time of the customer's last action, not a lookup of their actions per row.
        since = timezone.now() - timedelta(days=NO_ACTION_WINDOW_DAYS)
        qs = qs.filter(Q(last_action_at__isnull=True) | Q(last_action_at__lt=since))
    return qs.order_by(*_worklist_order(filters))


class WorklistIds:
    """The ids of a worklist in its order, for a Paginator to count and slice a page from.

    Descending, a page is one query read off the sort column's index. Ascending with empty values
    last is no index order, so a page is read as two ranges of the same index backwards - the
    customers with a value, then (once those run out) those without - instead of sorting every row.
    `count` is the tab's count when the caller knows it (no filter beyond stage and owner). Otherwise
    matches are counted up to WORKLIST_COUNT_CAP: counting every match of a filter over a million
    customers reads them all, and nobody pages that far; past it `capped` is set and the list ends there.
    """

    def __init__(self, qs: QuerySet[Customer], *, filters: WorklistFilters, count: int | None = None) -> None:
        self.qs, self.filters, self.known_count = qs.values_list("pk", flat=True), filters, count
        self.capped = False

    def count(self) -> int:
        if self.known_count is None:
            found = self.qs.order_by()[:WORKLIST_COUNT_CAP + 1].count()
            self.capped = found > WORKLIST_COUNT_CAP
            self.known_count = min(found, WORKLIST_COUNT_CAP)
        return self.known_count

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, page: slice) -> list[int]:
        start, stop = page.start or 0, page.stop
        if self.filters.descending:
            return list(self.qs[start:stop])
        column = _SORT_COLUMNS.get(self.filters.sort, "value_at_risk")
        backwards = _worklist_order(self.filters, nulls_first=True)
        with_value = self.qs.filter(**{f"{column}__isnull": False}).order_by(*backwards)
        ids = list(with_value[start:stop])
        if len(ids) == stop - start:
            return ids
        # The customers with a value ran out on this page: the rest of it comes from those without.
        skip = 0 if ids else start - with_value.count()
        without = self.qs.filter(**{f"{column}__isnull": True}).order_by(*backwards)
        return ids + list(without[skip:skip + stop - start - len(ids)])


def worklist_stage_counts(*, user: AbstractBaseUser, owner_id: int | None = None) -> dict[str, int]:
    """How many visible customers are in each lifecycle stage, for the tabs (one grouped query).

    An owner's book is counted off the (owner, segment, stage) index. Counting the whole shop (a
    manager with no owner chosen) reads every customer's index entry, ~0.2 s at 1,000,000: above
    STAGE_COUNTS_EXACT_UP_TO customers those counts are kept per web process for
    STAGE_COUNTS_CACHE_SECONDS, so they may lag an import or a scoring run by that much.
    """
    qs = customer_list_visible_to(user=user)
    if owner_id:
        qs = qs.filter(owner_id=owner_id)
    whole_shop = not owner_id and user_sees_everyone(user)
    if whole_shop and (counts := cache.get(STAGE_COUNTS_CACHE_KEY)) is not None:
        return counts
    counts = {stage: n for stage, n in qs.values_list("lifecycle_stage").annotate(n=Count("*")).order_by()}
    if whole_shop and sum(counts.values()) > STAGE_COUNTS_EXACT_UP_TO:
        cache.set(STAGE_COUNTS_CACHE_KEY, counts, STAGE_COUNTS_CACHE_SECONDS)
    return counts


def score_history_for(customer_ids: Iterable[int], *, limit: int = SPARKLINE_POINTS) -> dict[int, list[float]]:
    """Last `limit` probabilities per customer, oldest first, in one windowed query."""
    ids = list(customer_ids)
    if not ids:
        return {}
    rows = (
        ChurnScore.objects.filter(customer_id__in=ids)
        .annotate(rank=Window(RowNumber(), partition_by=[F("customer_id")], order_by=[F("as_of").desc(), F("pk").desc()]))
        .filter(rank__lte=limit)
        .values_list("customer_id", "as_of", "probability")
    )
    history: dict[int, list[tuple]] = defaultdict(list)
    for customer_id, as_of, probability in rows:
        history[customer_id].append((as_of, probability))
    return {cid: [p for _, p in sorted(points)] for cid, points in history.items()}


def _latest_per_customer(qs: QuerySet, ids: list[int], time_field: str) -> dict[int, object]:
    if not ids:
        return {}
    rows = (
        qs.filter(customer_id__in=ids)
        .annotate(rank=Window(RowNumber(), partition_by=[F("customer_id")], order_by=[F(time_field).desc(), F("pk").desc()]))
        .filter(rank=1)
    )
    return {row.customer_id: row for row in rows}


def last_alerts_for(customer_ids: Iterable[int]) -> dict[int, Alert]:
    return _latest_per_customer(Alert.objects.all(), list(customer_ids), "created_at")


def last_interventions_for(customer_ids: Iterable[int]) -> dict[int, Intervention]:
    return _latest_per_customer(Intervention.objects.all(), list(customer_ids), "created_at")


@dataclass
class WorklistRow:
    customer: Customer
    history: list[float]
    last_alert: Alert | None
    last_action: Intervention | None

    @property
    def score(self) -> ChurnScore | None:
        return self.customer.latest_score

    @property
    def top_reason(self) -> str:
        return top_reason(self.score.reasons if self.score else None)

    @property
    def change(self) -> float | None:
        if len(self.history) < 2:
            return None
        return self.history[-1] - self.history[0]


def worklist_page_customers(qs: QuerySet[Customer], ids: list[int]) -> list[Customer]:
    """Full rows for one page of ids, in page order.

    The page itself is chosen by sorting ids only: carrying every column (reasons JSON,
    attributes) through the sort of 100,000 joined rows costs more than this second query.
    """
    by_pk = qs.filter(pk__in=ids).in_bulk()
    return [by_pk[pk] for pk in ids if pk in by_pk]


def worklist_rows(customers: list[Customer]) -> list[WorklistRow]:
    """Decorate one page of customers with history, last alert and last action (3 queries)."""
    ids = [c.pk for c in customers]
    history = score_history_for(ids)
    alerts = last_alerts_for(ids)
    actions = last_interventions_for(ids)
    return [WorklistRow(c, history.get(c.pk, []), alerts.get(c.pk), actions.get(c.pk)) for c in customers]


def worklist_rows_streamed(qs: QuerySet[Customer], *, chunk: int = 1000) -> Iterator[WorklistRow]:
    """All rows of a worklist, decorated chunk by chunk so exports stay flat in memory and queries."""
    buffer: list[Customer] = []
    for customer in qs.iterator(chunk_size=chunk):
        buffer.append(customer)
        if len(buffer) >= chunk:
            yield from worklist_rows(buffer)
            buffer = []
    if buffer:
        yield from worklist_rows(buffer)


def owners_for_filter(*, user: AbstractBaseUser) -> list[AccountOwner]:
    if not user_sees_everyone(user):
        return []
    return list(AccountOwner.objects.only("pk", "name").order_by("name"))


def segments_for_filter(*, user: AbstractBaseUser) -> list[str]:
    """The segments of the customers a user may see, for the filter.

    A loose index scan - one index probe per distinct segment, on (segment) for the whole shop and on
    (owner, segment, stage) for a book - instead of DISTINCT over every row (~30 ms at 100,000
    customers, ~0.3 s for a 50,000-customer book).
    """
    owner = None if user_sees_everyone(user) else owner_for_user(user)
    if owner is None and not user_sees_everyone(user):
        return []
    table = connection.ops.quote_name(Customer._meta.db_table)
    column = connection.ops.quote_name(Customer._meta.get_field("owner").column)
    mine, params = (f"{column} = %s AND ", [owner.pk]) if owner is not None else ("", [])
    sql = (
        f"WITH RECURSIVE seg(v) AS (SELECT MIN(segment) FROM {table} WHERE {mine}segment > %s "
        f"UNION ALL SELECT (SELECT MIN(segment) FROM {table} WHERE {mine}segment > seg.v) FROM seg "
        f"WHERE seg.v IS NOT NULL) SELECT v FROM seg WHERE v IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, "", *params])
        return [row[0] for row in cursor.fetchall()]


# --- customer 360 ----------------------------------------------------------------------


def customer_history(*, customer: Customer, limit: int = HISTORY_POINTS) -> list[tuple]:
    rows = ChurnScore.objects.filter(customer=customer).order_by("-as_of").values_list("as_of", "probability")[:limit]
    return list(reversed(rows))


def customer_timeline(*, customer: Customer, kind: str = "", limit: int = 25) -> tuple[list[Event], bool]:
    """Newest events first, capped; the bool says whether there are more ("show more")."""
    qs = Event.objects.filter(customer=customer)
    if kind:
        qs = qs.filter(kind=kind)
    events = list(qs.order_by("-occurred_at", "-pk")[: limit + 1])
    return events[:limit], len(events) > limit


def customer_event_counts(*, customer: Customer) -> dict[str, int]:
    rows = Event.objects.filter(customer=customer).values("kind").annotate(n=Count("pk")).order_by()
    return {row["kind"]: row["n"] for row in rows}


def customer_interventions(*, customer: Customer) -> list[Intervention]:
    return list(
        Intervention.objects.filter(customer=customer)
        .select_related("created_by", "outcome_by", "alert")
        .order_by("-created_at", "-pk")
    )


def customer_alerts(*, customer: Customer, limit: int = 10) -> list[Alert]:
    return list(Alert.objects.filter(customer=customer).order_by("-created_at", "-pk")[:limit])


# Alerts that told someone about this customer; follow-up questions and reassignment notices are not about risk.
CHART_ALERT_KINDS = (Alert.Kind.HIGH_RISK, Alert.Kind.SHARP_RISE, Alert.Kind.ESCALATION)
CHART_ALERT_LIMIT = 500


def customer_chart_markers(*, customer: Customer, start: datetime, end: datetime,
                           interventions: Iterable[Intervention]) -> list[charts.Marker]:
    """Orders, alerts and logged actions from `start` to `end` (the score chart's time axis).

    Two queries however long the history: orders grouped by day and the alerts in the window
    (capped); the actions come from the page's own list. The chart merges marks that would overlap.
    """
    markers = [
        charts.Marker(when=row["at"], kind="order", count=row["n"], amount=row["total"])
        for row in (Event.objects.filter(customer=customer, kind=Event.Kind.ORDER, occurred_at__gte=start,
                                         occurred_at__lte=end)
                    .annotate(day=TruncDate("occurred_at")).values("day")
                    .annotate(n=Count("pk"), total=Sum("amount"), at=Min("occurred_at")).order_by("day"))
    ]
    alerts = (Alert.objects.filter(customer=customer, kind__in=CHART_ALERT_KINDS,
                                   status__in=[Alert.Status.SENT, Alert.Status.DIGESTED])
              .annotate(at=Coalesce("sent_at", "created_at")).filter(at__gte=start, at__lte=end)
              .order_by("-at").values_list("at", "kind", "status")[:CHART_ALERT_LIMIT])
    for at, kind, status in alerts:
        if kind == Alert.Kind.ESCALATION:
            label = "Escalated to the manager"
        else:
            how = "Alert sent" if status == Alert.Status.SENT else "Alert in the daily digest"
            label = f"{how}: {Alert.Kind(kind).label.lower()}"
        markers.append(charts.Marker(when=at, kind="alert", label=label))
    for iv in interventions:
        if start <= iv.created_at <= end:
            outcome = f" — {iv.get_outcome_display().lower()}" if iv.outcome else ""
            markers.append(charts.Marker(when=iv.created_at, kind="action", label=f"{iv.get_action_display()}{outcome}"))
    return markers


# --- interventions ---------------------------------------------------------------------


@dataclass(frozen=True)
class InterventionFilters:
    action: str = ""
    outcome: str = ""  # "" = any, "pending" = not recorded yet
    owner_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None
    follow_ups_due: bool = False


def intervention_list_visible(*, user: AbstractBaseUser, filters: InterventionFilters) -> QuerySet[Intervention]:
    qs = Intervention.objects.filter(customer__in=customer_list_visible_to(user=user)).select_related(
        "customer", "customer__owner", "customer__latest_score", "created_by", "outcome_by"
    )
    if filters.action:
        qs = qs.filter(action=filters.action)
    if filters.outcome == "pending":
        qs = qs.filter(outcome=Intervention.Outcome.PENDING)
    elif filters.outcome:
        qs = qs.filter(outcome=filters.outcome)
    if filters.owner_id:
        qs = qs.filter(customer__owner_id=filters.owner_id)
    if filters.date_from:
        qs = qs.filter(created_at__date__gte=filters.date_from)
    if filters.date_to:
        qs = qs.filter(created_at__date__lte=filters.date_to)
    if filters.follow_ups_due:
        qs = qs.filter(follow_up_on__lte=timezone.localdate(), outcome=Intervention.Outcome.PENDING).order_by("follow_up_on", "pk")
        return qs
    return qs.order_by("-created_at", "-pk")


def follow_ups_due_count(*, user: AbstractBaseUser) -> int:
    return intervention_list_visible(user=user, filters=InterventionFilters(follow_ups_due=True)).count()


# --- model report ----------------------------------------------------------------------


def model_versions_for_report(*, limit: int = 50) -> list[ModelVersion]:
    return list(ModelVersion.objects.select_related("promoted_by").order_by("-is_champion", "-created_at")[:limit])


def backtest_latest() -> BacktestRun | None:
    return BacktestRun.objects.order_by("-created_at", "-pk").first()


# The champion rule's metric first; plain PR-AUC when a version was saved without it.
PROMOTION_METRICS = (CHAMPION_METRIC, "pr_auc")


@dataclass(frozen=True)
class PromotionCheck:
    """A version next to the current champion on the validation metric the champion rule uses."""

    version: ModelVersion
    champion: ModelVersion | None
    metric: str = ""  # the key compared, "" when the two have no validation metric in common
    value: float | None = None
    champion_value: float | None = None

    @property
    def difference(self) -> float | None:
        if self.value is None or self.champion_value is None:
            return None
        return self.value - self.champion_value

    @property
    def weaker(self) -> bool:
        return self.difference is not None and self.difference < 0

    @property
    def same_data(self) -> bool:
        """Validated on the same cut of the data (trained to the same date, same horizon)."""
        return (self.champion is not None and self.version.trained_as_of == self.champion.trained_as_of
                and self.version.horizon_days == self.champion.horizon_days)


def _metric(version: ModelVersion, key: str) -> float | None:
    value = (version.metrics if isinstance(version.metrics, dict) else {}).get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def model_version_promotion_check(*, version: ModelVersion) -> PromotionCheck:
    """How `version` compares with the champion it would replace, on the champion rule's metric."""
    champion = ModelVersion.objects.filter(is_champion=True).exclude(pk=version.pk).first()
    if champion is None:
        return PromotionCheck(version=version, champion=None)
    for key in PROMOTION_METRICS:
        value, champion_value = _metric(version, key), _metric(champion, key)
        if value is not None and champion_value is not None:
            return PromotionCheck(version=version, champion=champion, metric=key, value=value,
                                  champion_value=champion_value)
    return PromotionCheck(version=version, champion=champion)


@dataclass(frozen=True)
class BacktestWindow:
    """The latest date a backtest can use: its label window of `horizon_days` must end by the newest event."""

    horizon_days: int
    first_event: datetime | None = None
    newest_event: datetime | None = None
    latest: date | None = None  # None: no events, or less history than one horizon

    @property
    def too_short(self) -> bool:
        return self.newest_event is not None and self.latest is None


def backtest_window(*, horizon_days: int) -> BacktestWindow:
    """Where `manage.py backtest` would put its default (latest) date, from one indexed MIN/MAX query."""
    span = Event.objects.aggregate(first=Min("occurred_at"), last=Max("occurred_at"))
    if span["last"] is None:
        return BacktestWindow(horizon_days=horizon_days)
    cutoff = latest_cutoff(span["last"], horizon_days)  # the backtest command's own rule
    latest = cutoff.date() if cutoff > as_timestamp(span["first"]) else None
    return BacktestWindow(horizon_days=horizon_days, first_event=span["first"], newest_event=span["last"], latest=latest)
