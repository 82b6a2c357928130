"""Labelled training rows from rolling cutoffs, with out-of-time validation and outcome overrides.

Treatment is data (mlcore.snapshot.treatment_features): every row carries the alerts and
actions from before its cutoff. Validation rows also carry evaluation weights
(`untreated_weights`, in `Rows.sample_weight`) so calibration and model comparison are judged
on rows that stand for "no alerts at all" (docs/closed-loop.md, section 5).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from mlcore.control_group import control_group_evaluation_weights
from mlcore.errors import NotEnoughData
from mlcore.event_tokens import event_tokens
from mlcore.families.base import Rows
from mlcore.snapshot import (
    ALERT_HELD_OUT_STATUS, ALERT_TOLD_STATUSES, FEATURE_NAMES, as_timestamp, churn_labels, customer_snapshot,
    snapshot_rows,
)

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
    """Every label window ends on or before `as_of`: validation at as_of - horizon, training cutoffs before it.

    The latest training cutoff is one horizon before the validation cutoff, so the last training
    label window [c, c + horizon) ends where validation's begins: no training label is read from
    the validation window (with 30-day steps and a 90-day horizon they used to share two months,
    which let early stopping and calibration reward a model for memorising that period).
    """
    data_start, as_of = as_timestamp(data_start), as_timestamp(as_of)
    valid = (as_of - pd.Timedelta(days=horizon_days)).normalize()
    earliest = data_start + pd.Timedelta(days=min_history_days)
    cutoffs = []
    c = valid - pd.Timedelta(days=horizon_days)
    while c >= earliest and len(cutoffs) < max_train_cutoffs:
        cutoffs.append(c)
        c -= pd.Timedelta(days=step_days)
    if valid < earliest or not cutoffs:
        need = min_history_days + 2 * horizon_days
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


def _window(frame: pd.DataFrame | None, column: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    if frame is None or not len(frame):
        return pd.DataFrame(columns=["customer_id", column, "status"])
    at = pd.to_datetime(frame[column], utc=True).dt.tz_localize(None)
    return frame[((at >= start) & (at < end)).to_numpy()]


def untreated_weights(customer_ids: np.ndarray, cutoff, horizon_days: int, *, alerts: pd.DataFrame | None = None,
                      interventions: pd.DataFrame | None = None) -> np.ndarray:
    """Evaluation weights for rows at `cutoff`: untreated rows stand for the population under "no alerts".

    A row is touched by treatment when, in [cutoff - horizon, cutoff + horizon) (the horizon
    before the label window, whose actions still act on it, and the window itself), a risk
    alert went to the owner or an action was logged. Alerts and actions in that window are
    label-side facts, like the label itself; they never become features of this row.
    Weights come from `control_group_evaluation_weights`: untouched customers 1, held-out
    customers nobody acted on 1 / share, every touched customer 0, where share is the held-out
    fraction of the alert-eligible customers of this cutoff (estimated, so a share changed
    mid-way still weights right). Without any alert or action in the window every weight is 1.
    Without a single held-out customer there is nothing untreated to stand for the alerted ones:
    then every weight is 1 as well (the caller reports it; see `evaluation_summary`).
    """
    cutoff = as_timestamp(cutoff)
    ids = pd.Index(np.asarray(customer_ids, dtype=np.int64))
    n = len(ids)
    start, end = cutoff - pd.Timedelta(days=horizon_days), cutoff + pd.Timedelta(days=horizon_days)
    al = _window(alerts, "alerted_at", start, end)
    iv = _window(interventions, "created_at", start, end)

    def flags(frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        pos = ids.get_indexer(frame["customer_id"].to_numpy(dtype=np.int64))
        out[pos[pos >= 0]] = True
        return out

    status = al["status"].astype(str) if len(al) else pd.Series(dtype=str)
    told = flags(al[status.isin(list(ALERT_TOLD_STATUSES)).to_numpy()]) if len(al) else np.zeros(n, bool)
    alert_eligible = flags(al) if len(al) else np.zeros(n, bool)  # failed alerts too: picked, not told
    held = flags(al[(status == ALERT_HELD_OUT_STATUS).to_numpy()]) if len(al) else np.zeros(n, bool)
    acted = flags(iv) if len(iv) else np.zeros(n, bool)
    touched = alert_eligible | acted
    held_untold = held & ~told  # the randomised untreated group (a customer told as well is not in it)
    if not touched.any() or not held_untold.any():
        return np.ones(n)
    control = held_untold & ~acted  # held out and nobody acted by hand either
    share = float(held_untold.sum() / alert_eligible.sum())
    if share >= 1.0:  # every alert-eligible customer was held out: they stand for themselves
        return np.where(touched & ~control, 0.0, 1.0)
    return control_group_evaluation_weights(touched, control, share=share)


def evaluation_summary(weights: np.ndarray | None) -> dict:
    """How the evaluation rows were weighted, in numbers and words (for reports and logs)."""
    w = np.ones(0) if weights is None else np.asarray(weights, dtype=np.float64)
    left_out, up = int((w == 0).sum()), int((w > 1).sum())
    if not left_out and not up:
        text = "all rows count once (no alert or action touched the evaluation rows, or no control group to weight by)"
    else:
        text = (f"untreated rows only: {left_out} alerted or treated rows left out, {up} held-out rows "
                f"weighted x{w[w > 1].max():.1f} to stand for the alerted ones" if up else
                f"untreated rows only: {left_out} alerted or treated rows left out")
    return {"rows": int(len(w)), "left_out": left_out, "held_out_weighted": up,
            "weight_sum": round(float(w.sum()), 3), "text": text}


def labelled_rows(events: pd.DataFrame, customers: pd.DataFrame, cutoffs, horizon_days: int, *,
                  interventions: pd.DataFrame | None = None, alerts: pd.DataFrame | None = None,
                  evaluation_weights: bool = False, texts: bool = True) -> Rows:
    """Snapshots at each cutoff with their churn labels, concatenated (prepared frames).

    Features (treatment columns included) read only what happened before each cutoff; labels
    read [cutoff, cutoff + horizon), recorded outcomes first. With `evaluation_weights` the rows
    carry `untreated_weights` in sample_weight (training, validation and test rows alike).
    `texts=False` leaves every row's text None: only the text families read them, and they are
    most of a snapshot's cost.
    """
    parts: list[Rows] = []
    for cutoff in cutoffs:
        cutoff = as_timestamp(cutoff)
        snap = customer_snapshot(events, customers, cutoff, interventions=interventions, alerts=alerts, prepared=True,
                                 texts=texts)
        labels = churn_labels(events, snap.customer_ids, cutoff, horizon_days)
        mask, override = outcome_overrides(interventions, snap.customer_ids, cutoff, horizon_days)
        labels[mask] = override[mask]
        rows = replace(snapshot_rows(snap, labels), events=event_tokens(events, snap.customer_ids, cutoff))
        if evaluation_weights:
            weights = untreated_weights(snap.customer_ids, cutoff, horizon_days, alerts=alerts,
                                        interventions=interventions)
            rows = replace(rows, sample_weight=weights.astype(np.float32))
        parts.append(rows)
    return concat_rows(parts)


def concat_rows(parts: list[Rows]) -> Rows:
    weighted = bool(parts) and all(p.sample_weight is not None for p in parts)
    return Rows(
        customer_ids=np.concatenate([p.customer_ids for p in parts]) if parts else np.zeros(0, np.int64),
        as_of=np.concatenate([p.as_of for p in parts]) if parts else np.zeros(0, "datetime64[ns]"),
        texts=[t for p in parts for t in p.texts],
        features=np.concatenate([p.features for p in parts]) if parts else np.zeros((0, len(FEATURE_NAMES)), np.float32),
        feature_names=FEATURE_NAMES,
        labels=np.concatenate([p.labels for p in parts]) if parts else np.zeros(0, np.int8),
        sample_weight=np.concatenate([p.sample_weight for p in parts]) if weighted else None,
        events=(np.concatenate([p.events for p in parts]) if parts and all(p.events is not None for p in parts)
                else None),
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
                  interventions: pd.DataFrame | None = None, alerts: pd.DataFrame | None = None,
                  texts: bool = True) -> tuple[Rows, Rows]:
    """Training and validation rows, both weighted by `untreated_weights`.

    An alert or a call inside a row's label window changes what the label means (a customer
    saved by a call looks like a stayer), so training rows are weighted like validation rows:
    touched rows weigh 0 and are dropped, held-out ones stand for them. Treatment before the
    cutoff stays a feature. Every weight reads alerts and actions up to the label window's end,
    at most valid_cutoff + horizon = as_of, so nothing the model could not know at as_of.
    """
    train = labelled_rows(events, customers, plan.train_cutoffs, plan.horizon_days, interventions=interventions,
                          alerts=alerts, evaluation_weights=True, texts=texts)
    train = train.take(np.asarray(train.sample_weight) > 0)
    valid = labelled_rows(events, customers, [plan.valid_cutoff], plan.horizon_days, interventions=interventions,
                          alerts=alerts, evaluation_weights=True, texts=texts)
    check_enough(train, "training")
    check_enough(valid, f"validation ({plan.valid_cutoff:%Y-%m-%d})")
    return train, valid


def training_rows(events: pd.DataFrame, customers: pd.DataFrame, *, as_of, horizon_days: int,
                  interventions: pd.DataFrame | None = None, alerts: pd.DataFrame | None = None, n_cutoffs: int = 6,
                  every_days: int = CUTOFF_STEP_DAYS, texts: bool = True) -> tuple[Rows, Rows]:
    """The mlcore contract: (train, valid) for a model used at `as_of`; every label window ends by as_of.

    valid = the latest fully-labelled cutoff (as_of - horizon), train = up to n_cutoffs - 1 earlier
    cutoffs every `every_days`. `interventions` (customer_id, created_at, action, outcome,
    outcome_at) and `alerts` (customer_id, alerted_at, status) become treatment columns and
    outcome labels; valid.sample_weight holds `untreated_weights`. `texts=False`: no customer
    texts (for families that read none, `mlcore.training.reads_texts`). Raises NotEnoughData with
    the numbers needed and found.
    """
    from mlcore.snapshot import prepare_customers, prepare_events

    ev, cu = prepare_events(events), prepare_customers(customers)
    if not len(ev):
        raise NotEnoughData("there are no events yet: import orders (or generate the demo shop) before training")
    plan = plan_cutoffs(data_start=ev["occurred_at"].min(), as_of=as_of, horizon_days=horizon_days,
                        step_days=every_days, max_train_cutoffs=max(1, n_cutoffs - 1))
    return training_data(ev, cu, plan, interventions=_until(interventions, "created_at", as_of),
                         alerts=_until(alerts, "alerted_at", as_of), texts=texts)


def _until(frame: pd.DataFrame | None, column: str, as_of) -> pd.DataFrame | None:
    """Rows of `frame` from strictly before as_of: a model for as_of cannot know later alerts or actions."""
    if frame is None or not len(frame):
        return frame
    at = pd.to_datetime(frame[column], utc=True).dt.tz_localize(None)
    return frame[(at < as_timestamp(as_of)).to_numpy()]
