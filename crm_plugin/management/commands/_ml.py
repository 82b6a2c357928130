"""Argument helpers shared by the ML management commands."""
from __future__ import annotations

import datetime as dt
import logging

from django.core.management.base import CommandError
from crm_plugin.formatting import money, plural, reasons_for_people


def parse_as_of(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--as-of must be YYYY-MM-DD, got {value!r}") from None
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone.utc)


def parse_families(value: str | None) -> list[str] | None:
    return [f.strip() for f in value.split(",") if f.strip()] if value else None


def format_reasons(reasons: list[dict], limit: int = 3) -> str:
    return "; ".join(r["text"] for r in reasons[:limit]) or "-"


def print_riskiest(stdout, scores) -> None:
    """The customers at risk with the most value at risk, each with up to four reasons in words."""
    if not scores:
        stdout.write("no active customer is at risk today")
        return
    stdout.write(f"at risk: the {plural(len(scores), 'active customer')} with the most value at risk "
                 "(as the worklist and /churn top rank them):")
    for s in scores:
        c = s.customer
        stdout.write(f"  {s.probability:.0%} {s.band:6} {money(c.value_at_risk):>8} at risk  "
                     f"{c.name or c.external_id} ({c.external_id})")
        for r in reasons_for_people(s.reasons, limit=4):
            stdout.write(f"      - {r['text']}")


def quiet_celery_trace() -> None:
    """In-process (eager) runs would log one INFO line per chunk task; the command prints its own summary."""
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
