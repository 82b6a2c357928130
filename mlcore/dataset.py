"""Labelled training rows from rolling cutoffs, with out-of-time validation and outcome overrides."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlcore.errors import NotEnoughData
from mlcore.families.base import Rows
from mlcore.snapshot import FEATURE_NAMES, Snapshot, as_timestamp, churn_labels, customer_snapshot, snapshot_rows

CUTOFF_STEP_DAYS = 30
MIN_HISTORY_DAYS = 60  # a cutoff needs this much history before it to say anything
MIN_LABELLED = 50
MIN_CHURNERS = 10
MIN_STAYERS = 10


@dataclass(frozen=True)
class Plan:
    """Which cutoffs train and validate a model that will be used at `as_of`."""

    as_of: pd.Timestamp
    horizon_days: int
    valid_cutoff: pd.Timestamp
    train_cutoffs: tuple[pd.Timestamp, ...]


def plan_cutoffs(*, data_start, as_of, horizon_days: int, step_days: int = CUTOFF_STEP_DAYS,
                 min_history_days: int = MIN_HISTORY_DAYS, max_train_cutoffs: int = 12) -> Plan:
    """Every label window ends on or before `as_of`: validation at as_of - horizon, training cutoffs before it."""
    data_start, as_of = as_timestamp(data_start), as_timestamp(as_of)
    valid = (as_of - pd.Timedelta(days=horizon_days)).normalize()
    earliest = data_start + pd.Timedelta(days=min_history_days)
    cutoffs = []
    c = valid - pd.Timedelta(days=step_days)
    while c >= earliest and len(cutoffs) < max_train_cutoffs:
        cutoffs.append(c)
        c -= pd.Timedelta(days=step_days)
    if valid < earliest or not cutoffs:
        need = min_history_days + step_days + horizon_days
        raise NotEnoughData(
            f"not enough history to train for {as_of:%Y-%m-%d} with a {horizon_days}-day horizon: "
            f"need at least {need} days of events before it (data starts {data_start:%Y-%m-%d}, "
            f"which gives {max(0, (as_of - data_start).days)} days)"
        )
    return Plan(as_of=as_of, horizon_days=horizon_days, valid_cutoff=valid, train_cutoffs=tuple(reversed(cutoffs)))


def outcome_overrides(interventions: pd.DataFrame | None, customer_ids: np.ndarray, cutoff: pd.Timestamp,
                      horizon_days: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask, label): recorded retained/churned outcomes within the label window replace the behaviour."""
    mask = np.zeros(len(customer_ids), dtype=bool)
    label = np.zeros(len(customer_ids), dtype=np.int8)
    if interventions is None or not len(interventions):
        return mask, label
    iv = interventions[interventions["outcome"].isin(["retained", "churned"])]
    if not len(iv):
        return mask, label
    at = pd.to_datetime(iv["outcome_at"], utc=True).dt.tz_localize(None)
    end = cutoff + pd.Timedelta(days=horizon_days)
    iv = iv[(at >= cutoff) & (at < end)].assign(_at=at).sort_values("_at")
    last = iv.drop_duplicates("customer_id", keep="last")  # the latest recorded outcome wins
    pos = pd.Index(customer_ids).get_indexer(last["customer_id"].to_numpy())
    ok = pos >= 0
    mask[pos[ok]] = True
    label[pos[ok]] = (last["outcome"].to_numpy()[ok] == "churned").astype(np.int8)
    return mask, label


def labelled_rows(events: pd.DataFrame, customers: pd.DataFrame, cutoffs, horizon_days: int, *,
                  interventions: pd.DataFrame | None = None) -> Rows:
    """Snapshots at each cutoff with their churn labels, concatenated (prepared frames)."""
    parts: list[Rows] = []
    for cutoff in cutoffs:
        cutoff = as_timestamp(cutoff)
        snap = customer_snapshot(events, customers, cutoff, interventions=interventions, prepared=True)
        labels = churn_labels(events, snap.customer_ids, cutoff, horizon_days)
        mask, override = outcome_overrides(interventions, snap.customer_ids, cutoff, horizon_days)
        labels[mask] = override[mask]
        parts.append(snapshot_rows(snap, labels))
    return concat_rows(parts)


def concat_rows(parts: list[Rows]) -> Rows:
    return Rows(
        customer_ids=np.concatenate([p.customer_ids for p in parts]) if parts else np.zeros(0, np.int64),
        as_of=np.concatenate([p.as_of for p in parts]) if parts else np.zeros(0, "datetime64[ns]"),
        texts=[t for p in parts for t in p.texts],
        features=np.concatenate([p.features for p in parts]) if parts else np.zeros((0, len(FEATURE_NAMES)), np.float32),
        feature_names=FEATURE_NAMES,
        labels=np.concatenate([p.labels for p in parts]) if parts else np.zeros(0, np.int8),
    )


def check_enough(rows: Rows, what: str) -> None:
    n = len(rows)
    churners = int(rows.labels.sum()) if n else 0
    stayers = n - churners
    if n < MIN_LABELLED or churners < MIN_CHURNERS or stayers < MIN_STAYERS:
        raise NotEnoughData(
            f"too few labelled customers in the {what} data: need at least {MIN_LABELLED} customers with "
            f"at least {MIN_CHURNERS} churners and {MIN_STAYERS} who stayed; have {n} customers, "
            f"{churners} churners, {stayers} stayed"
        )


def training_data(events: pd.DataFrame, customers: pd.DataFrame, plan: Plan, *,
                  interventions: pd.DataFrame | None = None) -> tuple[Rows, Rows]:
    train = labelled_rows(events, customers, plan.train_cutoffs, plan.horizon_days, interventions=interventions)
    valid = labelled_rows(events, customers, [plan.valid_cutoff], plan.horizon_days, interventions=interventions)
    check_enough(train, "training")
    check_enough(valid, f"validation ({plan.valid_cutoff:%Y-%m-%d})")
    return train, valid


def training_rows(events: pd.DataFrame, customers: pd.DataFrame, *, as_of, horizon_days: int,
                  interventions: pd.DataFrame | None = None, n_cutoffs: int = 6,
                  every_days: int = CUTOFF_STEP_DAYS) -> tuple[Rows, Rows]:
    """The mlcore contract: (train, valid) for a model used at `as_of`; every label window ends by as_of.

    valid = the latest fully-labelled cutoff (as_of - horizon), train = up to n_cutoffs - 1 earlier
    cutoffs every `every_days`. Raises NotEnoughData with the numbers needed and found.
    """
    from mlcore.snapshot import prepare_customers, prepare_events

    ev, cu = prepare_events(events), prepare_customers(customers)
    if not len(ev):
        raise NotEnoughData("there are no events yet: import orders (or generate the demo shop) before training")
    plan = plan_cutoffs(data_start=ev["occurred_at"].min(), as_of=as_of, horizon_days=horizon_days,
                        step_days=every_days, max_train_cutoffs=max(1, n_cutoffs - 1))
    return training_data(ev, cu, plan, interventions=interventions)
