"""Turn per-feature contributions and text-segment effects into reasons a person can act on.

A reason is {"code", "text", "weight", "evidence"}: weight is the push towards churn in log-odds
(features of one topic summed), evidence the facts behind the sentence. Only reasons that push
towards churn are kept, strongest first.

Treatment: scores are computed as if untreated (mlcore.snapshot.as_if_untreated), so the
treatment columns hold "no action" for everyone and no reason is built from them; a reason
never says an action lowered or raised the risk. What the policy did before (flagged the
customer) is a fact and can be a reason. The latest logged action is quoted as a note of weight
0 ("call logged 12 days ago; ..."), from the evidence, so the owner sees it next to a score that
assumes nothing is done.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from mlcore.messages import MESSAGE_FEATURE_NAMES

TOPICS: dict[str, tuple[str, ...]] = {
    "no_recent_order": ("days_since_last_order", "gap_ratio", "usual_gap_days", "has_orders", "orders_30"),
    "orders_down": ("orders_90", "orders_trend", "orders_365", "orders_total"),
    "spend_down": ("spend_30", "spend_90", "spend_365", "spend_total", "spend_trend", "avg_order_value"),
    "returns": ("returns_90", "returns_365", "return_rate_365"),
    "bad_review": ("mean_rating_365", "min_rating_90", "low_reviews_90", "reviews_365"),
    "open_ticket": ("tickets_open", "oldest_open_ticket_days", "tickets_90"),
    "coupons": ("coupons_365", "coupons_redeemed_365"),
    "fewer_visits": ("visits_30", "visits_90", "visits_trend", "days_since_last_visit", "days_since_last_event"),
    "new_customer": ("tenure_days",),
    # held_out equals flagged at scoring (flagged, nobody told): their joint push is "was flagged".
    "flagged": ("flagged", "days_since_flagged", "held_out"),
    # The customer's own words (mlcore.messages): the sentence quotes the most negative recent message.
    "message_tone": ("msg_tone_min_90", "msg_tone_mean_90", "msg_leaving_max_90", "msg_tone_last",
                     *(n for n in MESSAGE_FEATURE_NAMES if not n.startswith("msg_tone") and n != "msg_leaving_max_90")),
}
# Not a topic: alerted, treated, days_since_treatment and action_* (mlcore.snapshot.TREATMENT_FEATURES
# minus held_out) are "no action" when scoring, the same for every customer, so they explain nothing.
SEGMENT_TOPIC = {"review": "bad_review", "ticket": "open_ticket", "return": "returns"}
SEGMENT_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\w+)(.*)$")
MIN_WEIGHT = 0.02


def _days(as_of: pd.Timestamp, at) -> int | None:
    if at is None or pd.isna(at):
        return None
    return max(0, int((as_of - pd.Timestamp(at)) / pd.Timedelta(days=1)))


def _quote(text) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


def _sentence(code: str, f: dict, ev: dict, as_of: pd.Timestamp, push: dict | None = None
              ) -> tuple[str, dict, tuple[str, ...]]:
    """(text, evidence, drivers): the first sentence of the topic whose drivers push towards churn.

    A sentence names its drivers (the features it talks about). It is said only when its first
    driver's own contribution pushes towards churn (> 0 in `push`, feature -> log-odds), so "spend
    down 40%" never appears where the falling spend trend pulls the score down while other spend
    columns push it up. Without `push` every driver counts as pushing (the text alone).
    """
    def up(*names: str) -> bool:
        return push is None or any(push.get(n, 0.0) > 0 for n in names[:1])

    if code == "no_recent_order":
        if not f["has_orders"]:
            if up("has_orders") or up("days_since_last_order"):
                return "has never ordered", {"orders": 0}, ("has_orders", "days_since_last_order")
            return "", {}, ()
        d, g = int(round(f["days_since_last_order"])), int(round(f["usual_gap_days"]))
        last = ev.get("last_order_at")
        for drivers in (("days_since_last_order", "gap_ratio", "usual_gap_days"), ("gap_ratio", "days_since_last_order")):
            if up(*drivers):
                return (f"no order for {d} days (usually every {g})",
                        {"days_since_last_order": d, "usual_gap_days": g,
                         "last_order": None if pd.isna(last) else pd.Timestamp(last).strftime("%Y-%m-%d")}, drivers)
        return "", {}, ()
    if code == "orders_down":
        o90, o365 = int(f["orders_90"]), int(f["orders_365"])
        for drivers in (("orders_90", "orders_365"), ("orders_trend", "orders_90")):
            if up(*drivers):
                return (f"{o90} orders in the last 90 days ({o365} in the last year)",
                        {"orders_90": o90, "orders_365": o365}, drivers)
        return "", {}, ()
    if code == "spend_down":
        s, t = f["spend_90"], f["spend_trend"]
        prev = max(0.0, (s * (1 - t) - t) / (1 + t)) if t > -1 else 0.0
        if prev > 0 and s < prev and up("spend_trend"):
            pct = int(round(100 * (prev - s) / prev))
            return (f"spend down {pct}% vs previous 90 days ({s:.2f} vs {prev:.2f})",
                    {"spend_90": round(s, 2), "spend_previous_90": round(prev, 2)}, ("spend_trend", "spend_90"))
        for drivers in (("spend_90", "spend_30"), ("spend_30", "spend_90")):
            if up(*drivers):
                return (f"spent {s:.2f} in the last 90 days",
                        {"spend_90": round(s, 2), "spend_365": round(f["spend_365"], 2)}, drivers)
        return "", {}, ()
    if code == "returns":
        drivers = tuple(n for n in ("returns_90", "returns_365", "return_rate_365") if push is None or push.get(n, 0) > 0)
        if not drivers:
            return "", {}, ()
        n, q = int(f["returns_90"]), _quote(ev.get("return_text"))
        text = f"{n} return{'s' if n != 1 else ''} in the last 90 days" if n else f"{int(f['returns_365'])} return{'s' if int(f['returns_365']) != 1 else ''} in the last year"
        return text + (f": '{q}'" if q else ""), {"returns_90": n, "returns_365": int(f["returns_365"]), "quote": q}, drivers
    if code == "bad_review":
        rating, at = ev.get("review_rating"), ev.get("review_at")
        low = rating is not None and not pd.isna(rating) and rating <= 3
        for drivers in (("min_rating_90", "low_reviews_90"), ("low_reviews_90", "min_rating_90")):
            if low and up(*drivers):
                d, q = _days(as_of, at), _quote(ev.get("review_text"))
                return (f"{int(rating)}-star review {d} days ago" + (f": '{q}'" if q else ""),
                        {"rating": int(rating), "days_ago": d, "quote": q, "product": ev.get("review_item") or ""}, drivers)
        if up("mean_rating_365"):
            return (f"average rating {f['mean_rating_365']:.1f} over the last year",
                    {"mean_rating_365": round(f["mean_rating_365"], 2)}, ("mean_rating_365",))
        return "", {}, ()
    if code == "open_ticket":
        for drivers in (("tickets_open", "oldest_open_ticket_days"), ("oldest_open_ticket_days", "tickets_open")):
            if f["tickets_open"] > 0 and up(*drivers):
                d, q = int(round(f["oldest_open_ticket_days"])), _quote(ev.get("ticket_text"))
                n = int(f["tickets_open"])
                return (f"open ticket for {d} days" + (f": {q}" if q else "") + (f" ({n} open)" if n > 1 else ""),
                        {"open_tickets": n, "open_for_days": d, "quote": q}, drivers)
        if up("tickets_90"):
            return (f"{int(f['tickets_90'])} support tickets in the last 90 days", {"tickets_90": int(f["tickets_90"])},
                    ("tickets_90",))
        return "", {}, ()
    if code == "coupons":
        for drivers in (("coupons_365",), ("coupons_redeemed_365",)):
            if up(*drivers):
                return (f"{int(f['coupons_365'])} coupons in the last year, {int(f['coupons_redeemed_365'])} redeemed",
                        {"coupons_365": int(f["coupons_365"]), "redeemed": int(f["coupons_redeemed_365"])}, drivers)
        return "", {}, ()
    if code == "fewer_visits":
        d = int(round(f["days_since_last_visit"]))
        if d < 999:
            for drivers in (("days_since_last_visit", "visits_90"), ("visits_90", "visits_30"), ("visits_trend", "visits_90"),
                            ("visits_30", "visits_90")):
                if up(*drivers):
                    return (f"no site visit for {d} days ({int(f['visits_90'])} in the last 90 days)",
                            {"days_since_last_visit": d, "visits_90": int(f["visits_90"])}, drivers)
        if up("days_since_last_event"):
            return (f"no activity for {int(round(f['days_since_last_event']))} days",
                    {"days_since_last_event": int(round(f["days_since_last_event"]))}, ("days_since_last_event",))
        return "", {}, ()
    if code == "new_customer":
        if f["tenure_days"] > 180 or not up("tenure_days"):
            return "", {}, ()
        return f"customer for only {int(f['tenure_days'])} days", {"tenure_days": int(f["tenure_days"])}, ("tenure_days",)
    if code == "flagged":
        if f.get("flagged", 0.0) < 1:
            return "", {}, ()
        d = int(round(f["days_since_flagged"]))
        return f"already flagged as at risk {d} days ago", {"days_since_flagged": d}, ("flagged", "days_since_flagged", "held_out")
    if code == "message_tone":
        q, tone = _quote(ev.get("message_text")), ev.get("message_tone")
        if not q or tone is None or pd.isna(tone) or tone >= 0:
            return "", {}, ()
        for drivers in (("msg_tone_min_90",), ("msg_tone_mean_90",), ("msg_leaving_max_90",), ("msg_tone_last",)):
            if up(*drivers):
                d, kind = _days(as_of, ev.get("message_at")), ev.get("message_kind") or "message"
                return (f"negative {kind} {d} days ago: '{q}'",
                        {"kind": kind, "days_ago": d, "quote": q, "tone": round(float(tone), 3)}, drivers)
        return "", {}, ()
    raise KeyError(code)


def _action_note(ev: dict, as_of: pd.Timestamp) -> dict | None:
    """The latest logged action as a weight-0 note (a fact for the owner, not a push on the score)."""
    action, at = ev.get("action"), ev.get("action_at")
    if not isinstance(action, str) or not action:
        return None
    d = _days(as_of, at)
    when = f"{d} days ago" if d is not None else "before"
    return {"code": "past_action", "weight": 0.0,
            "text": f"{action} logged {when}; this score is the risk if nothing is done",
            "evidence": {"action": action, "days_ago": d,
                         "date": None if d is None else pd.Timestamp(at).strftime("%Y-%m-%d")}}


def _segment_reason(segment: str, as_of: pd.Timestamp) -> tuple[str, str, dict]:
    m = SEGMENT_RE.match(segment)
    if not m:
        return "text", f"'{_quote(segment)}'", {"segment": segment}
    date, kind, rest = m.group(1), m.group(2), m.group(3).strip()
    d = _days(as_of, pd.Timestamp(date))
    return f"recent_{kind}", f"{kind} {d} days ago: {_quote(rest)}".rstrip(": "), {"date": date, "segment": segment}


def build_reasons(
    *,
    feature_names: tuple[str, ...],
    features: np.ndarray,
    contributions: np.ndarray,
    evidence: pd.DataFrame,
    as_of,
    texts: list[str] | None = None,
    segment_effects: dict[int, list[tuple[int, float]]] | None = None,
    top: int = 5,
) -> list[list[dict]]:
    """Reasons per row. segment_effects: row -> [(segment index, change in log-odds when removed)]."""
    as_of = pd.Timestamp(as_of)
    index = {name: j for j, name in enumerate(feature_names)}
    topic_cols = {code: [index[c] for c in cols if c in index] for code, cols in TOPICS.items()}
    topic_weight = {code: contributions[:, cols].sum(axis=1) for code, cols in topic_cols.items() if cols}
    # One list per column, zipped into a dict per row: the same values as to_dict("records"), at half its cost.
    ev_columns = list(evidence.columns)
    ev_records = [dict(zip(ev_columns, row)) for row in zip(*(evidence[c].tolist() for c in ev_columns))] \
        if ev_columns else [{} for _ in range(len(evidence))]
    # Plain Python lists, converted once: indexing numpy element by element was most of the loop.
    names, feature_rows = list(index), np.asarray(features, dtype=np.float64).tolist()
    contribution_rows = np.asarray(contributions, dtype=np.float64).tolist()
    codes = list(topic_weight)
    weight_rows = np.column_stack([topic_weight[c] for c in codes]).tolist() if codes else [[]] * len(features)
    out: list[list[dict]] = []
    for i in range(len(features)):
        f = dict(zip(names, feature_rows[i]))
        ev = ev_records[i]
        weights = dict(zip(codes, weight_rows[i]))
        extra: list[dict] = []
        confirmed: set[str] = set()  # topics the customer's own text pushes: their sentence may be said
        for seg_index, delta in (segment_effects or {}).get(i, []):
            # delta = log-odds without the segment - with it; negative = the segment pushes towards churn
            push = -delta
            if push <= MIN_WEIGHT or texts is None:
                continue
            segment = texts[i].split("\n")[seg_index]
            kind = SEGMENT_RE.match(segment)
            topic = SEGMENT_TOPIC.get(kind.group(2)) if kind else None
            if topic and topic in weights:
                weights[topic] += push  # the text confirms the numeric topic: one reason, both pushes
                confirmed.add(topic)
                continue
            code, text, evid = _segment_reason(segment, as_of)
            extra.append({"code": code, "text": text, "weight": round(push, 4), "evidence": evid})
        row_push = dict(zip(names, contribution_rows[i]))
        reasons = []
        for code, w in weights.items():
            if w <= MIN_WEIGHT:
                continue
            text, evid, _ = _sentence(code, f, ev, as_of, None if code in confirmed else row_push)
            if not text:
                continue
            reasons.append({"code": code, "text": text, "weight": round(w, 4), "evidence": evid})
        reasons.extend(extra)
        _merge_repeated_quote(reasons)
        if not reasons:
            # Nothing pushes clearly above the usual risk: show the strongest small pushes, or say so,
            # so no score reaches an owner without an explanation.
            for code, w in sorted(weights.items(), key=lambda kv: -kv[1]):
                text, evid, _ = _sentence(code, f, ev, as_of, row_push) if w > 0 else ("", {}, ())
                if text:
                    reasons.append({"code": code, "text": text, "weight": round(w, 4), "evidence": evid})
                if len(reasons) == 2:
                    break
        if not reasons:
            reasons.append({"code": "baseline", "weight": 0.0, "evidence": {},
                            "text": "no single signal stands out: close to the shop's usual churn risk"})
        reasons.sort(key=lambda r: -r["weight"])
        note = _action_note(ev, as_of)
        out.append(reasons[:top - 1] + [note] if note else reasons[:top])
    return out


def _merge_repeated_quote(reasons: list[dict]) -> None:
    """A message already quoted by another reason (a low review) is said once: its push joins that reason."""
    message = next((r for r in reasons if r["code"] == "message_tone"), None)
    if message is None:
        return
    same = next((r for r in reasons if r is not message and r["evidence"].get("quote") == message["evidence"]["quote"]),
                None)
    if same is not None:
        same["weight"] = round(same["weight"] + message["weight"], 4)
        reasons.remove(message)


def logit_delta(p_full: np.ndarray, effects: list[list[tuple[int, float]]]) -> dict[int, list[tuple[int, float]]]:
    """Convert occlusion effects in probability (P without - P with) into log-odds deltas."""
    def lo(p):
        p = min(max(p, 1e-6), 1 - 1e-6)
        return math.log(p / (1 - p))
    return {i: [(s, lo(p_full[i] + d) - lo(p_full[i])) for s, d in row] for i, row in enumerate(effects)}
