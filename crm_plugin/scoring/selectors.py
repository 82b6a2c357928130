"""Read-only queries that load shop history into DataFrames for the models."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import pandas as pd
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import F, FloatField, Max, Min, TextField
from django.db.models.functions import Cast, Coalesce

from crm_plugin.models import Alert, Customer, Event, Intervention

# imported_at is when the event became known, state_imported_at when a re-sent event moved its state
# on: the earliest time a ticket marked closed (or a coupon marked redeemed) without a date can count
# as closed (redeemed) in a snapshot.
EVENT_FIELDS = ("customer_id", "kind", "occurred_at", "amount", "quantity", "rating", "text", "attributes",
                "imported_at", "state_imported_at")
_TIME_FIELDS = ("occurred_at", "imported_at", "state_imported_at")


def events_frame(*, customer_ids: Sequence[int] | None = None, before: dt.datetime | None = None) -> pd.DataFrame:
    """Events as a frame (EVENT_FIELDS; the times tz-aware UTC, amount float, attributes dicts).

    Ordered by customer, time and id, so ties in time come out the same way every run.
    """
    qs = Event.objects.order_by("customer_id", "occurred_at", "id")
    if customer_ids is not None:
        qs = qs.filter(customer_id__any_of=list(customer_ids))
    if before is not None:
        qs = qs.filter(occurred_at__lt=before)
    columns = [f for f in EVENT_FIELDS if f not in ("amount", *_TIME_FIELDS)]
    frame = _frame(qs.annotate(amount_float=Cast("amount", FloatField())), [*columns, "amount_float"], _TIME_FIELDS)
    frame = frame.rename(columns={"amount_float": "amount"})
    frame["amount"] = pd.to_numeric(frame["amount"], errors="coerce").astype("float64")
    frame["attributes"] = _json_objects(frame["attributes"].tolist())
    return frame[list(EVENT_FIELDS)]


def _frame(qs, fields: Sequence[str], time_fields: Sequence[str]) -> pd.DataFrame:
    """`qs` as a frame of `fields` then `time_fields` (tz-aware UTC), fetched with the ORM's SQL on a plain cursor.

    Times travel as ISO text and pandas parses each column in one go: Django's per-value converters
    (a tz-aware datetime object per value) were most of a scoring chunk's load (0.23 s vs 0.11 s for
    22,000 events; 0.1 s for 2,000 customers' two dates).
    """
    as_text = {f"{name}_text": Cast(name, TextField()) for name in time_fields}
    query = qs.annotate(**as_text).values_list(*fields, *as_text).query
    try:
        sql, params = query.sql_with_params()
    except EmptyResultSet:  # e.g. no customer ids: nothing to fetch
        rows = []
    else:
        with connections[qs.db].cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    frame = pd.DataFrame(rows, columns=[*fields, *time_fields])
    for name in time_fields:
        frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    return frame


def _json_objects(values: list) -> list[dict]:
    """JSON column values (text, or already decoded by the driver) as dicts; empty -> {}."""
    if all(isinstance(v, str) for v in values):  # one decode of one array: a tenth of a loads() per row
        return [v if isinstance(v, dict) else {} for v in json.loads("[" + ",".join(values) + "]")]
    return [v if isinstance(v, dict) else json.loads(v) if isinstance(v, str) and v else {} for v in values]


CUSTOMER_FIELDS = ("customer_id", "segment", "segment_since", "first_seen_at")


def customers_frame(*, customer_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Customers as a frame (CUSTOMER_FIELDS); segment_since says from when snapshots may show the segment."""
    qs = Customer.objects.all()
    if customer_ids is not None:
        qs = qs.filter(pk__any_of=list(customer_ids))
    return _frame(qs, ["pk", "segment"], ["segment_since", "first_seen_at"]).set_axis(
        list(CUSTOMER_FIELDS), axis=1)


INTERVENTION_FIELDS = ("customer_id", "created_at", "action", "outcome", "outcome_at")
ALERT_FIELDS = ("customer_id", "alerted_at", "status")


def interventions_frame(*, customer_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Every logged action: when, which, and the recorded outcome (labels and treatment columns)."""
    qs = Intervention.objects.all()
    if customer_ids is not None:
        qs = qs.filter(customer_id__any_of=list(customer_ids))
    return pd.DataFrame(list(qs.values_list(*INTERVENTION_FIELDS)), columns=list(INTERVENTION_FIELDS))


def alerts_frame(*, customer_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Risk alerts (high risk, sharp rise), told or held out, with the date the policy decided them.

    alerted_at is the as_of of the score the policy acted on (when the alert was decided; the
    creation time where an alert has no score), as the closed-loop report dates alerts.
    """
    qs = Alert.objects.filter(kind__in=(Alert.Kind.HIGH_RISK, Alert.Kind.SHARP_RISE), customer__isnull=False)
    if customer_ids is not None:
        qs = qs.filter(customer_id__any_of=list(customer_ids))
    rows = qs.order_by().annotate(alerted_at=Coalesce(F("score__as_of"), F("created_at"))).values_list(*ALERT_FIELDS)
    return pd.DataFrame(list(rows), columns=list(ALERT_FIELDS))


def event_time_range() -> tuple[dt.datetime | None, dt.datetime | None]:
    agg = Event.objects.aggregate(first=Min("occurred_at"), last=Max("occurred_at"))
    return agg["first"], agg["last"]


def customer_ids_with_history(*, before: dt.datetime) -> list[int]:
    """Customers with at least one event before `before`, in id order (the scoring population)."""
    # order_by() drops Event's default ordering, which would otherwise defeat DISTINCT.
    return list(Event.objects.filter(occurred_at__lt=before).order_by("customer_id")
                .values_list("customer_id", flat=True).distinct())
