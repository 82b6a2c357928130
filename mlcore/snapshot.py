"""Leak-free customer snapshots at a cutoff: numeric features, evidence for reasons, and a deterministic text.

Everything here is plain pandas/numpy and vectorised: only events with `occurred_at < as_of`
are read, and state that changes after an event (a ticket closing, a coupon being redeemed, the
customer's segment) counts only from when it is known to hold: a ticket is closed at as_of only
if its `closed_at` is before as_of, a coupon redeemed only if its `redeemed_at` is; one marked
closed or redeemed without a date counts from when the shop's data said so (`state_imported_at`
when a re-sent event moved the state on, else `imported_at`), never from the day it opened; the
segment shows only after `segment_since`.

The text uses absolute dates ("2026-11-02 order 45.00 shoes") so it does not change when a day
passes without events; relative recency lives in the numeric features. That keeps the encoder
cache valid for customers without new events.

Treatment is data: the alert policy's past decisions (`alerts`) and the retention actions
logged (`interventions`) before `as_of` become columns (`TREATMENT_FEATURES`). A model learns
risk with them, and scoring sets them to "no action" (`as_if_untreated`), so a score answers
"how likely is this customer to churn if we do nothing?" (docs/closed-loop.md, section 5).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from mlcore.families.base import Rows

# imported_at (optional): when the row became known. state_imported_at (optional): when a later import
# moved its state on (a ticket re-sent closed, a coupon re-sent redeemed); it dates that state instead.
# Without either, a ticket marked closed or a coupon marked redeemed without a date never counts as
# such (nothing says since when it holds).
EVENT_COLUMNS = ("customer_id", "kind", "occurred_at", "amount", "quantity", "rating", "text", "attributes",
                 "imported_at", "state_imported_at")
WINDOWS = (30, 90, 365)
NO_HISTORY_DAYS = 999.0  # recency value for "never happened": far beyond any horizon
TEXT_MAX_EVENTS = 12
TEXT_MAX_CHARS = 640  # ~128 word pieces of this vocabulary; a cut happens at a segment boundary
TEXT_SNIPPET_CHARS = 80
# Part of every text key: bump it when `_texts` changes what it writes, so encoder outputs cached
# for texts in the old format are recomputed instead of reused.
TEXT_FORMAT = 1

FEATURE_NAMES: tuple[str, ...] = (
    "days_since_last_order", "days_since_last_event", "usual_gap_days", "gap_ratio", "has_orders",
    "orders_30", "orders_90", "orders_365", "orders_total",
    "spend_30", "spend_90", "spend_365", "spend_total", "avg_order_value",
    "orders_trend", "spend_trend",
    "returns_90", "returns_365", "return_rate_365",
    "reviews_365", "mean_rating_365", "min_rating_90", "low_reviews_90",
    "tickets_open", "oldest_open_ticket_days", "tickets_90",
    "coupons_365", "coupons_redeemed_365",
    "visits_30", "visits_90", "visits_trend", "days_since_last_visit",
    "tenure_days",
    "flagged", "days_since_flagged", "alerted", "held_out",
    "treated", "days_since_treatment",
    "action_call", "action_email", "action_coupon", "action_recommendation", "action_escalation", "action_other",
)

# Intervention.Action values (a crm_plugin test keeps them in step); an unknown action counts as "other".
ACTION_TYPES: tuple[str, ...] = ("call", "email", "coupon", "recommendation", "escalation", "other")
# Alert.Status values: the owner was told (or is about to be); a held-out alert told nobody; a
# failed one reached nobody, so it is neither (the customer still counts as flagged).
ALERT_TOLD_STATUSES = frozenset({"pending", "sending", "sent", "digested"})
ALERT_HELD_OUT_STATUS = "held_out"
# Columns that describe what we did (told the owner, acted). Scoring sets them to "no action";
# `flagged` / `days_since_flagged` are the policy's past judgement, a fact we cannot undo, and
# stay as they are; `held_out` becomes `flagged` (flagged and nobody told: what a held-out
# customer is, so the scored row lies where the control group put training rows).
TREATMENT_FEATURES: tuple[str, ...] = ("alerted", "held_out", "treated", "days_since_treatment",
                                       *(f"action_{a}" for a in ACTION_TYPES))

# Feature name -> what it measures, in plain words (reasons and the model report quote these).
FEATURE_DOCS: dict[str, str] = {
    "days_since_last_order": f"days since the last order ({NO_HISTORY_DAYS:.0f} if never ordered)",
    "days_since_last_event": "days since the customer last did anything (order, visit, review, ticket, ...)",
    "usual_gap_days": "the customer's usual days between orders (median gap; 30 with a single order)",
    "gap_ratio": "days since the last order divided by the customer's usual gap between orders",
    "has_orders": "1 if the customer ever ordered",
    "orders_30": "orders in the last 30 days",
    "orders_90": "orders in the last 90 days",
    "orders_365": "orders in the last 365 days",
    "orders_total": "orders ever",
    "spend_30": "spend in the last 30 days",
    "spend_90": "spend in the last 90 days",
    "spend_365": "spend in the last 365 days",
    "spend_total": "spend ever",
    "avg_order_value": "average order value",
    "orders_trend": "orders in the last 90 days vs the 90 days before (-1 = stopped, +1 = new)",
    "spend_trend": "spend in the last 90 days vs the 90 days before (-1 = stopped, +1 = new)",
    "returns_90": "returns in the last 90 days",
    "returns_365": "returns in the last 365 days",
    "return_rate_365": "returns per order in the last 365 days",
    "reviews_365": "reviews in the last 365 days",
    "mean_rating_365": "average review rating in the last 365 days (4 when none)",
    "min_rating_90": "lowest review rating in the last 90 days (5 when none)",
    "low_reviews_90": "1- or 2-star reviews in the last 90 days",
    "tickets_open": "support tickets still open",
    "oldest_open_ticket_days": "days the oldest open support ticket has been open",
    "tickets_90": "support tickets opened in the last 90 days",
    "coupons_365": "coupons received in the last 365 days",
    "coupons_redeemed_365": "coupons redeemed in the last 365 days",
    "visits_30": "site visits in the last 30 days",
    "visits_90": "site visits in the last 90 days",
    "visits_trend": "visits in the last 90 days vs the 90 days before (-1 = stopped)",
    "days_since_last_visit": f"days since the last site visit ({NO_HISTORY_DAYS:.0f} if never)",
    "tenure_days": "days since the customer was first seen",
    "flagged": "1 if the alert policy picked the customer as at risk before this date (told or held out)",
    "days_since_flagged": f"days since the latest risk alert, told or held out ({NO_HISTORY_DAYS:.0f} if never)",
    "alerted": "1 if a risk alert went to the owner before this date (held-out alerts do not count)",
    "held_out": "1 if a risk alert was held out before this date (control group: nobody was told)",
    "treated": "1 if a retention action was taken before this date",
    "days_since_treatment": f"days since the latest retention action ({NO_HISTORY_DAYS:.0f} if never)",
    **{f"action_{a}": f"1 if a retention action of type '{a}' was logged before this date" for a in ACTION_TYPES},
}


def _naive_utc(values) -> pd.Series | pd.DatetimeIndex:
    """datetime64[ns] in UTC without tz, whatever came in (aware, naive, strings, objects)."""
    out = pd.to_datetime(values, utc=True, errors="coerce")
    if isinstance(out, pd.Series):
        return out.dt.tz_localize(None).astype("datetime64[ns]")
    return out.tz_localize(None).astype("datetime64[ns]")


def as_timestamp(as_of) -> pd.Timestamp:
    ts = pd.Timestamp(as_of)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("ns")


def prepare_events(events: pd.DataFrame) -> pd.DataFrame:
    """Normalise an events frame once (types, attribute columns) so many cutoffs reuse it.

    `closed_at` (tickets) and `redeemed_at` (coupons) become columns: when the state began to
    hold, NaT for "not (known to be) so". Compare them with the cutoff (`< as_of`), never read a
    state flag: the flags in `attributes` are the shop's current values.
    """
    df = events.copy()
    for column in EVENT_COLUMNS:
        if column not in df:
            df[column] = None
    df["customer_id"] = df["customer_id"].astype("int64")
    df["kind"] = df["kind"].astype(str)
    df["occurred_at"] = _naive_utc(df["occurred_at"])
    # When the current state was first said: the import that moved it on, else the event's own import.
    known = _naive_utc(df["state_imported_at"]).fillna(_naive_utc(df["imported_at"]))
    for column in ("amount", "quantity", "rating"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
    df["text"] = df["text"].fillna("").astype(str)
    attrs = df["attributes"]
    is_ticket = (df["kind"] == "ticket").to_numpy()
    is_coupon = (df["kind"] == "coupon").to_numpy()
    closed_at = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]")
    undated = np.zeros(len(df), dtype=bool)  # closed / redeemed, but nobody said when
    if is_ticket.any():
        ticket_attrs = [a if isinstance(a, dict) else {} for a in attrs[is_ticket]]
        closed_at[is_ticket] = _naive_utc(pd.Series([a.get("closed_at") for a in ticket_attrs], dtype=object)).to_numpy()
        undated[is_ticket] = [str(a.get("status") or "open") == "closed" for a in ticket_attrs]
    redeemed_at = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]")
    if is_coupon.any():
        coupon_attrs = [a if isinstance(a, dict) else {} for a in attrs[is_coupon]]
        redeemed_at[is_coupon] = _naive_utc(pd.Series([a.get("redeemed_at") for a in coupon_attrs],
                                                       dtype=object)).to_numpy()
        undated[is_coupon] = [a.get("redeemed") is True for a in coupon_attrs]
    # Marked closed (redeemed) without a date: known from the import that said so, not from the day
    # the ticket opened, which would show every later-closed ticket as closed all along.
    undated &= (closed_at.isna() & redeemed_at.isna()).to_numpy()
    closed_at[undated & is_ticket] = known[undated & is_ticket]
    redeemed_at[undated & is_coupon] = known[undated & is_coupon]
    is_item = df["kind"].isin(["order", "review"]).to_numpy()
    item = pd.Series("", index=df.index, dtype=object)
    if is_item.any():
        item[is_item] = [
            str((a.get("category") or a.get("product") or "")) if isinstance(a, dict) else "" for a in attrs[is_item]
        ]
    df["closed_at"] = closed_at
    df["redeemed_at"] = redeemed_at
    df["item"] = item.fillna("").astype(str)
    df = df.drop(columns=["attributes", "imported_at", "state_imported_at"]).sort_values(["customer_id", "occurred_at"], kind="stable")
    return df.reset_index(drop=True)


def prepare_customers(customers: pd.DataFrame) -> pd.DataFrame:
    """Normalise a customers frame (customer_id, segment, segment_since, first_seen_at; all but the id optional).

    The segment has no history: `segment_since` is when its current value was recorded, and a
    snapshot shows it only after that (`segment_at`). Without the column the segment is never shown.
    """
    df = customers.copy()
    df["customer_id"] = df["customer_id"].astype("int64")
    df["first_seen_at"] = _naive_utc(df["first_seen_at"]) if "first_seen_at" in df else pd.NaT
    df["segment"] = df["segment"].fillna("").astype(str) if "segment" in df else ""
    df["segment_since"] = _naive_utc(df["segment_since"]) if "segment_since" in df else pd.NaT
    return df.set_index("customer_id", drop=False)


def segment_at(cu: pd.DataFrame, ids: pd.Index, as_of: pd.Timestamp) -> pd.Series:
    """Each customer's segment as known at as_of: the current one if recorded before as_of, else ""."""
    if not len(cu):
        return pd.Series("", index=ids, dtype=object)
    known = cu.reindex(ids)
    recorded = known["segment_since"].to_numpy() < np.datetime64(as_of)  # NaT: never
    return known["segment"].fillna("").astype(str).where(recorded, "")


@dataclass(frozen=True)
class Snapshot:
    """Features, evidence and texts of the customers with history before `as_of` (same row order)."""

    as_of: pd.Timestamp
    customer_ids: np.ndarray
    features: pd.DataFrame  # columns FEATURE_NAMES, float32
    evidence: pd.DataFrame  # raw facts the reasons quote (dates, texts)
    texts: list[str | None]  # None where not built: the caller's known text key still matched, or texts=False
    text_keys: list[str] = ()  # per customer, when asked for (`known_text_keys`): see `text_keys`


def _count(codes: np.ndarray, n: int, weights=None) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=n).astype(np.float64)


def _latest_per_customer(frame: pd.DataFrame, ids: pd.Index, value_cols: list[str]) -> pd.DataFrame:
    """The newest row per customer among `frame` (sorted by time), aligned to `ids`."""
    last = frame.drop_duplicates("customer_id", keep="last").set_index("customer_id")[value_cols]
    return last.reindex(ids)


def snapshot(events: pd.DataFrame, customers: pd.DataFrame, as_of, *, text_max_chars: int = TEXT_MAX_CHARS,
             interventions: pd.DataFrame | None = None, alerts: pd.DataFrame | None = None) -> Rows:
    """The mlcore contract: one Rows entry per customer with any event before `as_of`; labels None.

    Only events with occurred_at < as_of are read; texts use absolute dates (see the module doc).
    The treatment columns hold what really happened before as_of; scoring applies `as_if_untreated`.
    `customer_snapshot` returns the same plus the evidence frame that reasons quote.
    """
    return snapshot_rows(customer_snapshot(events, customers, as_of, interventions=interventions, alerts=alerts,
                                           max_chars=text_max_chars))


def customer_snapshot(
    events: pd.DataFrame,
    customers: pd.DataFrame,
    as_of,
    *,
    interventions: pd.DataFrame | None = None,
    alerts: pd.DataFrame | None = None,
    prepared: bool = False,
    max_events_in_text: int = TEXT_MAX_EVENTS,
    max_chars: int = TEXT_MAX_CHARS,
    known_text_keys: Mapping[int, str] | None = None,
    texts: bool = True,
) -> Snapshot:
    """Build features and texts at `as_of` from events strictly before it.

    `interventions` (customer_id, created_at, action) and `alerts` (customer_id, alerted_at,
    status) feed the treatment columns; only rows from strictly before as_of are read.
    With `known_text_keys` (customer id -> the key of a text the caller already has, e.g. in an
    encoder cache) the snapshot also returns every customer's text key, and builds texts only
    where the key differs: the others get None, since their text would be the one the caller has.
    `texts=False` builds no text at all (every entry None), for a model that reads none: the texts
    cost more than all the features together.
    """
    as_of = as_timestamp(as_of)
    ev = events if prepared else prepare_events(events)
    cu = customers if prepared else prepare_customers(customers)
    ev = ev[ev["occurred_at"] < as_of]
    ids = pd.Index(np.unique(ev["customer_id"].to_numpy()), dtype="int64")
    n = len(ids)
    codes = ids.get_indexer(ev["customer_id"].to_numpy())
    age = ((as_of - ev["occurred_at"]).to_numpy() / np.timedelta64(1, "D")).astype(np.float64)
    kind = ev["kind"].to_numpy()
    amount = np.nan_to_num(ev["amount"].to_numpy(), nan=0.0)
    rating = ev["rating"].to_numpy()
    f: dict[str, np.ndarray] = {}

    # --- orders: recency, frequency, spend, trends, gaps vs the customer's own rhythm ---
    is_order = kind == "order"
    oc, oage, oamt = codes[is_order], age[is_order], amount[is_order]
    for w in WINDOWS:
        m = oage < w
        f[f"orders_{w}"] = _count(oc[m], n)
        f[f"spend_{w}"] = _count(oc[m], n, oamt[m])
    f["orders_total"] = _count(oc, n)
    f["spend_total"] = _count(oc, n, oamt)
    last_order_age = np.full(n, np.nan)
    np.fmin.at(last_order_age, oc, oage) if len(oc) else None
    has_orders = f["orders_total"] > 0
    f["has_orders"] = has_orders.astype(np.float64)
    f["days_since_last_order"] = np.where(has_orders, last_order_age, NO_HISTORY_DAYS)
    prev = (oage >= 90) & (oage < 180)
    orders_prev90 = _count(oc[prev], n)
    spend_prev90 = _count(oc[prev], n, oamt[prev])
    f["orders_trend"] = (f["orders_90"] - orders_prev90) / (f["orders_90"] + orders_prev90 + 1.0)
    f["spend_trend"] = (f["spend_90"] - spend_prev90) / (f["spend_90"] + spend_prev90 + 1.0)
    f["avg_order_value"] = np.divide(f["spend_total"], f["orders_total"], out=np.zeros(n), where=has_orders)
    # Usual gap: median days between consecutive orders (events are sorted by customer, time).
    orders = ev.loc[is_order, ["customer_id", "occurred_at"]]
    gaps = orders["occurred_at"].diff().dt.total_seconds().to_numpy() / 86400.0
    same = orders["customer_id"].to_numpy()
    valid_gap = np.r_[False, same[1:] == same[:-1]] if len(same) else np.zeros(0, dtype=bool)
    gap_frame = pd.DataFrame({"c": same[valid_gap], "g": gaps[valid_gap]})
    usual = gap_frame.groupby("c")["g"].median().reindex(ids).to_numpy(dtype=np.float64)
    # One order only: no rhythm of its own yet; a month is the neutral guess.
    usual = np.where(np.isnan(usual), 30.0, np.maximum(usual, 1.0))
    f["usual_gap_days"] = usual
    f["gap_ratio"] = np.where(has_orders, f["days_since_last_order"] / usual, NO_HISTORY_DAYS / 30.0)

    # --- any event, visits ---
    last_age = np.full(n, np.inf)
    np.minimum.at(last_age, codes, age)
    f["days_since_last_event"] = last_age
    is_visit = kind == "visit"
    vc, vage = codes[is_visit], age[is_visit]
    f["visits_30"] = _count(vc[vage < 30], n)
    f["visits_90"] = _count(vc[vage < 90], n)
    visits_prev90 = _count(vc[(vage >= 90) & (vage < 180)], n)
    f["visits_trend"] = (f["visits_90"] - visits_prev90) / (f["visits_90"] + visits_prev90 + 1.0)
    last_visit = np.full(n, NO_HISTORY_DAYS)
    if len(vc):
        np.minimum.at(last_visit, vc, vage)
    f["days_since_last_visit"] = last_visit

    # --- returns ---
    is_ret = kind == "return"
    rc, rage = codes[is_ret], age[is_ret]
    f["returns_90"] = _count(rc[rage < 90], n)
    f["returns_365"] = _count(rc[rage < 365], n)
    f["return_rate_365"] = f["returns_365"] / (f["orders_365"] + 1.0)

    # --- reviews ---
    is_rev = (kind == "review") & ~np.isnan(rating)
    wc, wage, wr = codes[is_rev], age[is_rev], rating[is_rev]
    m365 = wage < 365
    f["reviews_365"] = _count(wc[m365], n)
    rating_sum = _count(wc[m365], n, wr[m365])
    # No reviews: a neutral 4 (the typical shop average) so silence does not look like anger.
    f["mean_rating_365"] = np.divide(rating_sum, f["reviews_365"], out=np.full(n, 4.0), where=f["reviews_365"] > 0)
    min90 = np.full(n, 5.0)
    m90 = wage < 90
    if m90.any():
        np.minimum.at(min90, wc[m90], wr[m90])
    f["min_rating_90"] = min90
    f["low_reviews_90"] = _count(wc[m90 & (wr <= 2)], n)

    # --- tickets: open at as_of means not closed before as_of ---
    is_tix = kind == "ticket"
    closed_at = ev["closed_at"].to_numpy()[is_tix]
    open_now = np.isnat(closed_at) | (closed_at >= np.datetime64(as_of))
    tc, tage = codes[is_tix], age[is_tix]
    f["tickets_open"] = _count(tc[open_now], n)
    oldest = np.zeros(n)
    if open_now.any():
        np.maximum.at(oldest, tc[open_now], tage[open_now])
    f["oldest_open_ticket_days"] = oldest
    f["tickets_90"] = _count(tc[tage < 90], n)

    # --- coupons: redeemed at as_of means redeemed before as_of ---
    is_cp = (kind == "coupon") & (age < 365)
    f["coupons_365"] = _count(codes[is_cp], n)
    redeemed_now = ev["redeemed_at"].to_numpy() < np.datetime64(as_of)  # NaT: not redeemed
    f["coupons_redeemed_365"] = _count(codes[is_cp & redeemed_now], n)

    # --- tenure and treatment ---
    first_event_age = np.zeros(n)
    np.maximum.at(first_event_age, codes, age)
    first_seen = cu["first_seen_at"].reindex(ids).to_numpy() if len(cu) else np.full(n, np.datetime64("NaT"))
    seen_age = (np.datetime64(as_of) - first_seen) / np.timedelta64(1, "D")
    seen_age = np.where(np.isnan(seen_age) | (seen_age < 0), 0.0, seen_age)
    f["tenure_days"] = np.maximum(first_event_age, seen_age)
    f.update(treatment_features(ids, as_of, interventions=interventions, alerts=alerts))

    features = pd.DataFrame({name: f[name].astype(np.float32) for name in FEATURE_NAMES}, index=ids)
    evidence = _evidence(ev, ids, as_of, is_order, is_rev, is_tix, open_now)
    last_action = _last_action(ids, as_of, interventions)
    evidence["action"], evidence["action_at"] = last_action["action"], last_action["created_at"]
    keys: list[str] = []
    build = None
    if not texts:
        build = np.zeros(n, dtype=bool)
    elif known_text_keys is not None:
        keys = text_keys(ev, ids, cu, codes=codes, as_of=as_of, max_events_in_text=max_events_in_text,
                         max_chars=max_chars)
        build = np.array([known_text_keys.get(cid) != key for cid, key in zip(ids.tolist(), keys)], dtype=bool)
    built = _texts(ev, ids, cu, max_events_in_text=max_events_in_text, max_chars=max_chars, as_of=as_of, only=build)
    return Snapshot(as_of=as_of, customer_ids=ids.to_numpy(), features=features, evidence=evidence, texts=built,
                    text_keys=keys)


def _before(frame: pd.DataFrame | None, column: str, as_of: pd.Timestamp) -> pd.DataFrame | None:
    """The rows of `frame` whose `column` is strictly before as_of, with that column as naive UTC `_at`."""
    if frame is None or not len(frame):
        return None
    if column not in frame:
        raise ValueError(f"the frame needs a {column!r} column (got {', '.join(map(str, frame.columns))})")
    at = _naive_utc(frame[column]).to_numpy()
    keep = ~np.isnat(at) & (at < np.datetime64(as_of))
    if not keep.any():
        return None
    out = frame.loc[keep].copy()
    out["_at"] = at[keep]
    out["customer_id"] = out["customer_id"].astype("int64")
    return out.sort_values(["customer_id", "_at"], kind="stable")


def treatment_features(ids: pd.Index, as_of: pd.Timestamp, *, interventions: pd.DataFrame | None = None,
                       alerts: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
    """The treatment columns for customers `ids` at as_of, from alerts and interventions strictly before it.

    Alerts: a row per risk alert (customer_id, alerted_at, status); alerted_at is the policy's
    as_of (the score's date), status an Alert.Status value. Interventions: customer_id,
    created_at and optionally action (missing: "other").
    """
    n = len(ids)
    f = {name: np.zeros(n) for name in ("flagged", "alerted", "held_out", "treated",
                                         *(f"action_{a}" for a in ACTION_TYPES))}
    f["days_since_flagged"] = np.full(n, NO_HISTORY_DAYS)
    f["days_since_treatment"] = np.full(n, NO_HISTORY_DAYS)
    now = np.datetime64(as_of)
    al = _before(alerts, "alerted_at", as_of)
    if al is not None:
        pos = ids.get_indexer(al["customer_id"].to_numpy())
        ok = pos >= 0
        pos, status = pos[ok], al["status"].astype(str).to_numpy()[ok]
        age = (now - al["_at"].to_numpy()[ok]) / np.timedelta64(1, "D")
        f["flagged"][pos] = 1.0
        np.minimum.at(f["days_since_flagged"], pos, age)
        f["alerted"][pos[np.isin(status, list(ALERT_TOLD_STATUSES))]] = 1.0
        f["held_out"][pos[status == ALERT_HELD_OUT_STATUS]] = 1.0
    iv = _before(interventions, "created_at", as_of)
    if iv is not None:
        pos = ids.get_indexer(iv["customer_id"].to_numpy())
        ok = pos >= 0
        pos = pos[ok]
        age = (now - iv["_at"].to_numpy()[ok]) / np.timedelta64(1, "D")
        f["treated"][pos] = 1.0
        np.minimum.at(f["days_since_treatment"], pos, age)
        action = _action_types(iv)[ok]
        for a in ACTION_TYPES:
            f[f"action_{a}"][pos[action == a]] = 1.0
    return f


def _action_types(iv: pd.DataFrame) -> np.ndarray:
    if "action" not in iv:
        return np.full(len(iv), "other", dtype=object)
    action = iv["action"].fillna("other").astype(str).to_numpy(dtype=object)
    return np.where(np.isin(action, list(ACTION_TYPES)), action, "other")


def _last_action(ids: pd.Index, as_of: pd.Timestamp, interventions: pd.DataFrame | None) -> pd.DataFrame:
    """The latest action logged before as_of per customer (None / NaT when none): evidence for reasons."""
    iv = _before(interventions, "created_at", as_of)
    if iv is None:
        return pd.DataFrame({"action": pd.Series(None, index=ids, dtype=object),
                             "created_at": pd.Series(pd.NaT, index=ids, dtype="datetime64[ns]")})
    latest = iv.assign(action=_action_types(iv), created_at=iv["_at"])
    return _latest_per_customer(latest, ids, ["action", "created_at"])


def as_if_untreated(rows: Rows) -> Rows:
    """The same rows with the treatment columns set to "no action" (scoring: churn risk if we do nothing).

    alerted, treated and the action columns become 0, days_since_treatment "never"; held_out
    becomes flagged (flagged and nobody told is what a held-out customer is). Columns a model
    does not have are left alone, so older feature lists pass through unchanged.
    """
    names = list(rows.feature_names)
    features = np.array(rows.features, dtype=np.float32, copy=True)
    for name in TREATMENT_FEATURES:
        if name in names:
            features[:, names.index(name)] = NO_HISTORY_DAYS if name == "days_since_treatment" else 0.0
    if "held_out" in names and "flagged" in names:
        features[:, names.index("held_out")] = features[:, names.index("flagged")]
    return replace(rows, features=features)


def rows_for_features(rows: Rows, feature_names) -> Rows:
    """`rows` restricted to a model's feature list, in its order (a model saved before features were added).

    Raises MlError naming the features the model needs that the rows do not have.
    """
    from mlcore.errors import MlError

    wanted = tuple(feature_names)
    if wanted == tuple(rows.feature_names):
        return rows
    have = {name: j for j, name in enumerate(rows.feature_names)}
    missing = [name for name in wanted if name not in have]
    if missing:
        raise MlError(f"the model needs features this code does not compute: {', '.join(missing)}; retrain it")
    return replace(rows, features=rows.features[:, [have[name] for name in wanted]], feature_names=wanted)


def _evidence(ev, ids, as_of, is_order, is_rev, is_tix, open_now) -> pd.DataFrame:
    """The facts a reason quotes: last order date, the worst recent review, the oldest open ticket."""
    out = pd.DataFrame(index=ids)
    last_order = _latest_per_customer(ev[is_order], ids, ["occurred_at", "amount"])
    out["last_order_at"] = last_order["occurred_at"]
    reviews = ev[is_rev & (ev["occurred_at"] >= as_of - pd.Timedelta(days=90))]
    worst = reviews.sort_values(["customer_id", "rating", "occurred_at"], ascending=[True, False, True], kind="stable")
    worst = _latest_per_customer(worst, ids, ["occurred_at", "rating", "text", "item"])
    out["review_at"], out["review_rating"], out["review_text"], out["review_item"] = (
        worst["occurred_at"], worst["rating"], worst["text"], worst["item"])
    tickets = ev[is_tix][open_now].sort_values(["customer_id", "occurred_at"], ascending=[True, False], kind="stable")
    oldest = _latest_per_customer(tickets, ids, ["occurred_at", "text"])
    out["ticket_at"], out["ticket_text"] = oldest["occurred_at"], oldest["text"]
    returns = _latest_per_customer(ev[ev["kind"] == "return"], ids, ["occurred_at", "text"])
    out["return_at"], out["return_text"] = returns["occurred_at"], returns["text"]
    return out


def _money(values: pd.Series) -> pd.Series:
    return values.map(lambda v: "" if pd.isna(v) else f" {v:.2f}")


def _snippet(text: pd.Series) -> pd.Series:
    cleaned = text.str.replace(r"\s+", " ", regex=True).str.strip()
    cut = cleaned.str.slice(0, TEXT_SNIPPET_CHARS)
    return cut.where(cut == "", ": " + cut)


def text_keys(ev: pd.DataFrame, ids: pd.Index, cu: pd.DataFrame, *, codes: np.ndarray, as_of: pd.Timestamp,
              max_events_in_text: int, max_chars: int) -> list[str]:
    """Per customer, a 64-bit fingerprint of everything `_texts` builds the text from: equal key, equal text.

    That is every event before as_of (any change to one, an added or removed one, changes the
    key), whether each ticket counts as closed and each coupon as redeemed at as_of (the text
    says "open" / nothing until then), the segment as known at as_of, the text settings and
    TEXT_FORMAT. `ev` holds only events before as_of and `codes` maps its rows to positions in
    `ids`. Far cheaper than building the text to hash it: a daily
    re-run compares keys and builds only the texts of customers with something new.
    """
    n = len(ids)
    closed = ev["closed_at"].where(ev["closed_at"] < as_of)
    rows = pd.DataFrame({"t": ev["occurred_at"], "k": ev["kind"], "i": ev["item"], "a": ev["amount"],
                         "r": ev["rating"], "x": ev["text"], "c": closed, "d": ev["redeemed_at"] < as_of})
    row_hash = pd.util.hash_pandas_object(rows, index=False).to_numpy(dtype=np.uint64)
    per_customer = np.zeros(n, dtype=np.uint64)
    np.add.at(per_customer, codes, row_hash)  # a sum: the same events give the same key in any row order
    segment = segment_at(cu, ids, as_of)
    segment_hash = pd.util.hash_array(segment.to_numpy(dtype=object))
    settings = int(pd.util.hash_array(np.array([f"{TEXT_FORMAT}|{max_events_in_text}|{max_chars}"], dtype=object))[0])
    with np.errstate(over="ignore"):
        key = per_customer ^ (segment_hash * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(settings)
    return [f"t{TEXT_FORMAT}:{v:016x}" for v in key.tolist()]


def _texts(ev, ids, cu, *, max_events_in_text: int, max_chars: int, as_of, only: np.ndarray | None = None
           ) -> list[str | None]:
    """profile \\n aggregates \\n newest event \\n ... (absolute dates only, so a quiet day changes nothing).

    `only` (a mask over ids): build just those customers' texts, None for the rest.
    """
    if only is not None:
        out: list[str | None] = [None] * len(ids)
        wanted = ids[only]
        if len(wanted):
            built = _texts(ev[ev["customer_id"].isin(wanted)], wanted, cu, max_events_in_text=max_events_in_text,
                           max_chars=max_chars, as_of=as_of)
            for position, text in zip(np.flatnonzero(only).tolist(), built):
                out[position] = text
        return out
    if not len(ids):
        return []
    recent = ev.groupby("customer_id", sort=False).tail(max_events_in_text)
    recent = recent.iloc[::-1]  # newest first within each customer
    date = recent["occurred_at"].dt.strftime("%Y-%m-%d")
    kind = recent["kind"]
    item = recent["item"].where(recent["item"] == "", " " + recent["item"])
    seg = date + " " + kind
    seg = seg.where(kind != "order", seg + _money(recent["amount"]) + item)
    rating = recent["rating"].map(lambda r: "" if pd.isna(r) else f" {int(r)}/5")
    seg = seg.where(kind != "review", seg + rating + item + _snippet(recent["text"]))
    closed = recent["closed_at"]
    is_closed = closed.notna() & (closed < as_of)
    status = pd.Series(np.where(is_closed, " closed " + closed.dt.strftime("%Y-%m-%d").fillna(""), " open"), index=recent.index)
    seg = seg.where(kind != "ticket", seg + status + _snippet(recent["text"]))
    seg = seg.where(kind != "return", seg + _money(recent["amount"]) + _snippet(recent["text"]))
    redeemed = recent["redeemed_at"] < as_of
    seg = seg.where(kind != "coupon", seg + _money(recent["amount"]) + np.where(redeemed, " redeemed", ""))
    events_text = seg.groupby(recent["customer_id"], sort=False).agg("\n".join).reindex(ids)

    # Aggregates over the whole history before as_of: they change only when an event arrives.
    g = ev.groupby("customer_id", sort=False)
    is_order = ev["kind"] == "order"
    n_orders = is_order.groupby(ev["customer_id"]).sum().reindex(ids).fillna(0).astype(int)
    spend = ev["amount"].where(is_order, 0.0).fillna(0.0).groupby(ev["customer_id"]).sum().reindex(ids).fillna(0.0)
    n_returns = (ev["kind"] == "return").groupby(ev["customer_id"]).sum().reindex(ids).fillna(0).astype(int)
    n_tickets = (ev["kind"] == "ticket").groupby(ev["customer_id"]).sum().reindex(ids).fillna(0).astype(int)
    ratings = ev["rating"].where(ev["kind"] == "review")
    mean_rating = ratings.groupby(ev["customer_id"]).mean().reindex(ids)
    first = g["occurred_at"].min().reindex(ids).dt.strftime("%Y-%m-%d")
    aggregates = (
        "history: " + n_orders.astype(str) + " orders, " + spend.map(lambda v: f"{v:.2f}") + " spent, "
        + n_returns.astype(str) + " returns, " + n_tickets.astype(str) + " tickets"
        + mean_rating.map(lambda r: "" if pd.isna(r) else f", average rating {r:.1f}")
    )
    segment = segment_at(cu, ids, as_of)
    profile = "customer since " + first + segment.map(lambda s: f", segment {s}" if s else "")
    full = (profile + "\n" + aggregates + "\n" + events_text.fillna("")).tolist()
    return [_cut(t, max_chars) for t in full]


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars)
    return text[:cut] if cut > 0 else text[:max_chars]


def churn_labels(events: pd.DataFrame, customer_ids: np.ndarray, as_of, horizon_days: int) -> np.ndarray:
    """1 = no order in [as_of, as_of + horizon), per customer id (prepared events)."""
    as_of = as_timestamp(as_of)
    end = as_of + pd.Timedelta(days=horizon_days)
    t = events["occurred_at"]
    if getattr(t.dtype, "tz", None) is not None:  # raw (tz-aware) frames as well as prepared ones
        t = _naive_utc(t)
    ordered = events.loc[(events["kind"] == "order") & (t >= as_of) & (t < end), "customer_id"].unique()
    return (~np.isin(customer_ids, ordered)).astype(np.int8)


def snapshot_rows(snap: Snapshot, labels: np.ndarray | None = None) -> Rows:
    return Rows(
        customer_ids=snap.customer_ids.astype(np.int64),
        as_of=np.full(len(snap.customer_ids), snap.as_of.to_datetime64(), dtype="datetime64[ns]"),
        texts=list(snap.texts),
        features=snap.features[list(FEATURE_NAMES)].to_numpy(dtype=np.float32),
        feature_names=FEATURE_NAMES,
        labels=labels,
    )
