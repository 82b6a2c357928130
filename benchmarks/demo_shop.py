"""Demo shop benchmark: generation time, and the churn labels a rolling-cutoff backtest would see.

Run on a fresh database (after `migrate`):
    DATABASE_URL=sqlite:////tmp/demo_bench.sqlite3 .venv/bin/python benchmarks/demo_shop.py --customers 5000
It regenerates the demo shop (--replace), then prints, for cutoffs every 30 days, the share of customers
with no order in the next 90 days: among all customers seen before the cutoff, and among those who
ordered in the 180 days before it (the population a scoring run cares about).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import pandas as pd  # noqa: E402

from crm_plugin.models import Event  # noqa: E402
from demo.shop import demo_shop_delete, demo_shop_generate  # noqa: E402


def label_rates(horizon: int = 90, step: int = 30) -> pd.DataFrame:
    orders = pd.DataFrame(Event.objects.filter(kind="order").values_list("customer_id", "occurred_at"),
                          columns=["customer", "at"])
    first, last = orders["at"].min(), orders["at"].max()
    rows = []
    cutoff = first.normalize() + pd.Timedelta(days=horizon)
    while cutoff + pd.Timedelta(days=horizon) <= last + pd.Timedelta(days=1):
        before = orders[orders["at"] < cutoff]
        seen = set(before["customer"])
        active = set(before.loc[before["at"] >= cutoff - pd.Timedelta(days=180), "customer"])
        buyers = set(orders.loc[(orders["at"] >= cutoff) & (orders["at"] < cutoff + pd.Timedelta(days=horizon)),
                                "customer"])
        rows.append({"cutoff": cutoff.date(), "seen": len(seen), "churn_rate_seen": 1 - len(seen & buyers) / len(seen),
                     "active": len(active), "churn_rate_active": 1 - len(active & buyers) / max(len(active), 1)})
        cutoff += pd.Timedelta(days=step)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--end-date", type=date.fromisoformat, default=date.today() - timedelta(days=0))
    args = parser.parse_args()
    demo_shop_delete()
    started = time.perf_counter()
    summary = demo_shop_generate(customers=args.customers, days=args.days, seed=args.seed, end_date=args.end_date,
                                 replace=True)
    elapsed = time.perf_counter() - started
    print(f"{summary.n_customers:,} customers, {summary.n_events:,} events in {elapsed:.1f}s "
          f"({summary.n_events / elapsed:,.0f} events/s); {summary.events_by_kind}")
    print(f"no order in the last 90 days: {summary.share_no_order_last_90_days:.1%}")
    pd.set_option("display.width", 140)
    print(label_rates().to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
