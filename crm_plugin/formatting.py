"""How money, points and dates read on every surface (pages, Slack, exports' labels): one place,
so "€4,844", "+3 pts" and "4 Mar 2026" look the same wherever a manager meets them."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "CHF": "CHF ", "SEK": "SEK ", "DKK": "DKK ", "PLN": "PLN "}


def currency_symbol() -> str:
    code = (settings.SHOP_CURRENCY or "EUR").upper()
    return _SYMBOLS.get(code, f"{code} ")


def money(value, *, digits: int = 0) -> str:
    """€4,844 (or -€12); an empty string for None."""
    if value is None or value == "":
        return ""
    number = float(value) if not isinstance(value, Decimal) else float(value)
    sign = "-" if number < 0 else ""
    return f"{sign}{currency_symbol()}{abs(number):,.{digits}f}"


def points(change) -> str:
    """A change in probability as percentage points: +3 pts, -12 pts, 0 pts."""
    if change is None:
        return ""
    pts = round(float(change) * 100)
    return f"{pts:+d} pts" if pts else "0 pts"


def day(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        value = timezone.localtime(value) if timezone.is_aware(value) else value
        value = value.date()
    if isinstance(value, date):
        return f"{value.day} {value:%b %Y}"
    return str(value)


def plural(n: int, word: str, words: str | None = None) -> str:
    """A count with its noun: 1 day, 3 days; `words` where the plural is not word + s (1 reply, 2 replies)."""
    return f"{n} {word if n == 1 else words or word + 's'}"


# --- reasons in a manager's words ------------------------------------------------------------
# The model's reasons carry a code and the numbers behind them (evidence). People get a sentence
# with units and the shop's currency; the raw feature names and weights stay in a collapsed
# "evidence" detail. Reasons nobody can act on are left out.

def _reason_sentence(code: str, text: str, evidence: dict) -> str | None:
    """The sentence for one reason, or None to leave it out."""
    e = evidence if isinstance(evidence, dict) else {}
    try:
        if code == "coupons":
            return None  # how many coupons they got says nothing a manager can change by calling
        if code == "no_recent_order" and "days_since_last_order" in e:
            return (f"no order for {e['days_since_last_order']} days; usually orders every "
                    f"{plural(int(e['usual_gap_days']), 'day')}")
        if code == "orders_down" and "orders_90" in e:
            if int(e.get("orders_365", 0)) <= 1:
                return None  # a single order ever is not a trend
            return (f"{plural(int(e['orders_90']), 'order')} in the last 90 days "
                    f"({int(e['orders_365'])} in the last year)")
        if code == "spend_down" and "spend_previous_90" in e:
            before, now = float(e["spend_previous_90"]), float(e["spend_90"])
            drop = round(100 * (before - now) / before) if before else 0
            return f"spending down {drop}% on the previous 90 days ({money(now)} vs {money(before)})"
        if code == "spend_down" and "spend_90" in e:
            return f"spent {money(e['spend_90'])} in the last 90 days ({money(e.get('spend_365', 0))} in the year)"
        if code == "returns" and int(e.get("returns_90", 1)) == 0 and int(e.get("returns_365", 1)) == 0:
            return None
    except (TypeError, ValueError, KeyError):
        pass
    return text


def reasons_for_people(reasons, *, limit: int | None = None) -> list[dict]:
    """[{text, evidence, weight, code}] in words, strongest first; unactionable ones left out."""
    shown = []
    for reason in reasons if isinstance(reasons, list) else []:
        if not isinstance(reason, dict) or not reason.get("text"):
            continue
        sentence = _reason_sentence(str(reason.get("code", "")), str(reason["text"]), reason.get("evidence") or {})
        if not sentence:
            continue
        weight = reason.get("weight")
        shown.append({
            "text": sentence[:1].upper() + sentence[1:], "code": str(reason.get("code", "")),
            "weight": weight if isinstance(weight, (int, float)) and not isinstance(weight, bool) else None,
            "evidence": reason.get("evidence"),
        })
    return shown[:limit] if limit else shown


def top_reason(reasons) -> str:
    shown = reasons_for_people(reasons, limit=1)
    return shown[0]["text"] if shown else ""
