"""Read-only queries that load shop history into DataFrames for the models."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd
from django.db.models import F, Max, Min
from django.db.models.functions import Coalesce

from crm_plugin.models import Alert, Customer, Event, Intervention

EVENT_FIELDS = ("customer_id", "kind", "occurred_at", "amount", "quantity", "rating", "text", "attributes")


def events_frame(*, customer_ids: Sequence[int] | None = None, before: dt.datetime | None = None) -> pd.DataFrame:
    qs = Event.objects.all()
    if customer_ids is not None:
        qs = qs.filter(customer_id__in=list(customer_ids))
    if before is not None:
        qs = qs.filter(occurred_at__lt=before)
    rows = list(qs.values_list(*EVENT_FIELDS).iterator(chunk_size=20000))
    frame = pd.DataFrame(rows, columns=list(EVENT_FIELDS))
    frame["amount"] = pd.to_numeric(frame["amount"].astype(object), errors="coerce")
    return frame


def customers_frame(*, customer_ids: Sequence[int] | None = None) -> pd.DataFrame:
    qs = Customer.objects.all()
    if customer_ids is not None:
        qs = qs.filter(pk__in=list(customer_ids))
    return pd.DataFrame(list(qs.values_list("pk", "segment", "first_seen_at")),
                        columns=["customer_id", "segment", "first_seen_at"])


INTERVENTION_FIELDS = ("customer_id", "created_at", "action", "outcome", "outcome_at")
ALERT_FIELDS = ("customer_id", "alerted_at", "status")


def interventions_frame(*, customer_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Every logged action: when, which, and the recorded outcome (labels and treatment columns)."""
    qs = Intervention.objects.all()
    if customer_ids is not None:
        qs = qs.filter(customer_id__in=list(customer_ids))
    return pd.DataFrame(list(qs.values_list(*INTERVENTION_FIELDS)), columns=list(INTERVENTION_FIELDS))


def alerts_frame(*, customer_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Risk alerts (high risk, sharp rise), told or held out, with the date the policy decided them.

    alerted_at is the as_of of the score the policy acted on (when the alert was decided; the
    creation time where an alert has no score), as the closed-loop report dates alerts.
    """
    qs = Alert.objects.filter(kind__in=(Alert.Kind.HIGH_RISK, Alert.Kind.SHARP_RISE), customer__isnull=False)
    if customer_ids is not None:
        qs = qs.filter(customer_id__in=list(customer_ids))
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
