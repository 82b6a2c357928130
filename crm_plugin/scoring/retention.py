"""Score retention: daily scores for SCORE_KEEP_DAILY_DAYS, then one score per customer and week.

Scoring adds a row per customer per day (365 million a year at a million customers), yet only
the recent days are read daily: the charts, the 7-day change, the alert policy's previous score
and sharp-rise window. Older history is only ever drawn as a trend, for which a point a week
is enough. What is never deleted, whatever its age:

- a customer's `latest_score` (the worklist, the customer page, Slack, the profit threshold);
- every score an alert points at (the lift and the funnel read the probability the alert was
  decided on; training dates alerts by their score's as_of for the treatment features);
- the last score of each week (the long-range chart keeps a point a week);
- anything within SCORE_KEEP_DAILY_DAYS of the customer's own latest score, so a customer who
  stopped being scored keeps the daily history that led up to it (sparkline, chart, 7-day change).

The window is measured per customer from their latest score, never from the clock: a shop whose
daily job was down for a month loses nothing by it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Window
from django.db.models.functions import RowNumber, TruncWeek

from crm_plugin.errors import CrmError
from crm_plugin.models import Alert, ChurnScore, Customer

# The windows that read daily history: the 7-day change (scoring) and the sharp-rise window
# (alert policy). A shorter daily window would change what they compute.
MIN_DAILY_DAYS = 7
# Placeholders per DELETE on databases without array parameters (SQLite allows 32,766).
DELETE_BATCH = 5000


@dataclass
class ScorePruneSummary:
    """What one pruning pass did (or, with dry_run, would do)."""

    customers: int = 0
    examined: int = 0  # scores older than the daily window
    deleted: int = 0
    kept_alerted: int = 0  # older than the window, not their week's last, kept because an alert points at them
    dry_run: bool = False

    def __str__(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (f"{self.customers} customers: {self.examined} scores older than the daily window, {verb} "
                f"{self.deleted}, kept {self.kept_alerted} that alerts point at")


def _doomed_scores(customer_ids: list[int], daily_days: int, lookback_days: int | None) -> tuple[list[int], int, int]:
    """Ids of scores these customers no longer need; (ids, examined, kept because of an alert)."""
    cutoff = F("customer__latest_score__as_of") - timedelta(days=daily_days)
    older = ChurnScore.objects.filter(customer_id__any_of=customer_ids, as_of__lt=cutoff)
    if lookback_days is not None:
        # Weeks further back were thinned by earlier runs. Safe at any bound: a week with a row
        # inside it has its last row inside it too, and only rows inside are candidates.
        older = older.filter(as_of__gte=cutoff - timedelta(days=lookback_days))
    ranked = (
        older.annotate(
            # Newest first within the customer's week (in TIME_ZONE): rank 1 is the week's point.
            week_rank=Window(RowNumber(), partition_by=[F("customer_id"), TruncWeek("as_of")],
                             order_by=[F("as_of").desc(), F("pk").desc()]),
            alerted=Exists(Alert.objects.filter(score_id=OuterRef("pk"))),
        )
        .filter(week_rank__gt=1)
        .order_by()
        .values_list("pk", "alerted")
    )
    examined = older.count()
    doomed, kept = [], 0
    for pk, alerted in ranked:
        if alerted:
            kept += 1
        else:
            doomed.append(pk)
    return doomed, examined, kept


def _delete(ids: list[int]) -> int:
    """One DELETE per batch, re-checking the references in the statement itself.

    Not `QuerySet.delete()`: with SET_NULL relations (alerts, latest_score) Django's collector loads
    every row, reasons included, before deleting; at a million customers that is most of a day's rows.
    """
    table = connection.ops.quote_name(ChurnScore._meta.db_table)
    alerts = connection.ops.quote_name(Alert._meta.db_table)
    customers = connection.ops.quote_name(Customer._meta.db_table)
    guard = (f"AND NOT EXISTS (SELECT 1 FROM {alerts} a WHERE a.score_id = {table}.id) "
             f"AND NOT EXISTS (SELECT 1 FROM {customers} c WHERE c.latest_score_id = {table}.id)")
    deleted = 0
    with connection.cursor() as cursor:
        for start in range(0, len(ids), DELETE_BATCH):
            part = ids[start:start + DELETE_BATCH]
            if connection.vendor == "postgresql":
                cursor.execute(f"DELETE FROM {table} WHERE id = ANY(%s) {guard}", [part])
            else:
                cursor.execute(f"DELETE FROM {table} WHERE id IN ({', '.join(['%s'] * len(part))}) {guard}", part)
            deleted += cursor.rowcount
    return deleted


def churn_scores_prune(*, daily_days: int | None = None, batch_customers: int | None = None,
                       lookback_days: int | None = None, dry_run: bool = False) -> ScorePruneSummary:
    """Thin each customer's score history to one score a week beyond the daily window.

    Works through the customers in batches of `batch_customers`, one short transaction each, so
    scoring and the pages never wait on a long lock and memory stays flat at any shop size.
    `lookback_days`: only look at scores up to that many days beyond the daily window (the daily
    beat task: what crossed it since the last runs), so a day's pruning costs a day's rows and not
    the whole history; None looks at everything (the first run, or after a long pause).
    Idempotent: a second run right after the first deletes nothing.
    """
    daily_days = settings.SCORE_KEEP_DAILY_DAYS if daily_days is None else daily_days
    batch = settings.SCORE_PRUNE_BATCH_CUSTOMERS if batch_customers is None else batch_customers
    if not isinstance(daily_days, int) or isinstance(daily_days, bool) or daily_days < MIN_DAILY_DAYS:
        raise CrmError(f"Keep daily scores for at least {MIN_DAILY_DAYS} days (the 7-day change and the "
                       f"sharp-rise window read them), not {daily_days!r}.", code="invalid_days")
    if daily_days < settings.ALERT_SHARP_RISE_DAYS:
        raise CrmError(f"Keep daily scores for at least ALERT_SHARP_RISE_DAYS ({settings.ALERT_SHARP_RISE_DAYS}) "
                       f"days, not {daily_days}.", code="invalid_days")
    if lookback_days is not None and (not isinstance(lookback_days, int) or lookback_days < 7):
        raise CrmError(f"Look back at least a week (7 days), not {lookback_days!r}.", code="invalid_days")
    if not isinstance(batch, int) or batch < 1:
        raise CrmError(f"A batch needs at least one customer, not {batch!r}.", code="invalid_batch")
    summary = ScorePruneSummary(dry_run=dry_run)
    # Customers without a latest score have never been scored (or lost it): nothing to thin.
    scored = Customer.objects.filter(latest_score__isnull=False).order_by("pk").values_list("pk", flat=True)
    last = 0
    while True:
        ids = list(scored.filter(pk__gt=last)[:batch])
        if not ids:
            break
        last = ids[-1]
        with transaction.atomic():
            doomed, examined, kept = _doomed_scores(ids, daily_days, lookback_days)
            summary.customers += len(ids)
            summary.examined += examined
            summary.kept_alerted += kept
            summary.deleted += len(doomed) if dry_run else _delete(doomed)
    return summary
