"""Benchmark: score retention (`churn_scores_prune`) on PostgreSQL.

Builds N customers with a score every day for D days (set-based SQL; 1% of customers carry an
alert on an old score) in its own database, then times
  1. the first pruning of the whole history (`manage.py scores_prune`: lookback None), and
  2. a day later - one more day of scores - the daily beat task's run (lookback
     SCORE_PRUNE_LOOKBACK_DAYS), which is what every day costs from then on.

    .venv/bin/python benchmarks/scores_prune.py --customers 10000 --days 200
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/churn_bench_prune ...

The database is rebuilt on every run: never point it at real data.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.benchdb import bench_database_url, ensure_database, setup_django  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/churn_bench_prune"


def build(n_customers: int, days: int, start_offset: int = 1) -> None:
    from django.db import connection

    from crm_plugin.models import ModelVersion

    with connection.cursor() as cur:
        cur.execute("TRUNCATE crm_plugin_alert, crm_plugin_churnscore, crm_plugin_customer, crm_plugin_modelversion "
                    "RESTART IDENTITY CASCADE")
    version = ModelVersion.objects.create(name="bench-prune", family="logreg", artifact_path="bench", is_champion=True)
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO crm_plugin_customer (external_id, name, email, segment, first_seen_at, attributes, value,
                                             created_at, updated_at)
            SELECT 'R' || g, '', '', '', now(), '{}', 0, now(), now() FROM generate_series(1, %s) g
            """, [n_customers])
        cur.execute(
            """
            INSERT INTO crm_plugin_churnscore (customer_id, model_version_id, as_of, probability, band, reasons, created_at)
            SELECT c.id, %s, date_trunc('day', now()) - (d + %s) * interval '1 day', random(), 'low',
                   '[{"code": "recency", "text": "no order for 64 days (usually every 20)", "weight": 0.3}]'::jsonb, now()
            FROM crm_plugin_customer c CROSS JOIN generate_series(0, %s - 1) d
            """, [version.pk, start_offset, days])
        cur.execute(
            """
            UPDATE crm_plugin_customer c SET latest_score_id = s.id FROM crm_plugin_churnscore s
            WHERE s.customer_id = c.id AND s.as_of = date_trunc('day', now()) - %s * interval '1 day'
            """, [start_offset])
        cur.execute(
            """
            INSERT INTO crm_plugin_alert (customer_id, score_id, kind, status, idempotency_key, is_control, payload,
                                          attempts, last_error, slack_channel, slack_ts, created_at)
            SELECT s.customer_id, s.id, 'high_risk', 'sent', 'prune-' || s.id, false, '{}', 1, '', '', '', s.as_of
            FROM crm_plugin_churnscore s
            WHERE s.customer_id %% 100 = 0 AND s.as_of = date_trunc('day', now()) - (%s + 150) * interval '1 day'
            """, [start_offset])
        cur.execute("VACUUM ANALYZE crm_plugin_churnscore, crm_plugin_customer, crm_plugin_alert")


def add_today() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO crm_plugin_churnscore (customer_id, model_version_id, as_of, probability, band, reasons, created_at)
            SELECT c.id, s.model_version_id, date_trunc('day', now()), random(), 'low', s.reasons, now()
            FROM crm_plugin_customer c JOIN crm_plugin_churnscore s ON s.id = c.latest_score_id
            """)
        cur.execute(
            """
            UPDATE crm_plugin_customer c SET latest_score_id = s.id FROM crm_plugin_churnscore s
            WHERE s.customer_id = c.id AND s.as_of = date_trunc('day', now())
            """)
        cur.execute("ANALYZE crm_plugin_churnscore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=200)
    args = parser.parse_args()
    url = bench_database_url(DEFAULT_URL)
    ensure_database(url)
    setup_django(url, migrate=True)
    from django.conf import settings

    from crm_plugin.models import ChurnScore
    from crm_plugin.scoring.retention import churn_scores_prune

    t = time.perf_counter()
    build(args.customers, args.days)
    rows = ChurnScore.objects.count()
    print(f"built {args.customers:,} customers x {args.days} days = {rows:,} scores in {time.perf_counter() - t:.0f} s",
          flush=True)
    out = {"customers": args.customers, "days": args.days, "scores_before": rows}
    for label, lookback, prepare in (("first run, whole history", None, None),
                                     ("next day, daily beat task", settings.SCORE_PRUNE_LOOKBACK_DAYS, add_today)):
        if prepare:
            prepare()
        load = os.getloadavg()[0]
        t = time.perf_counter()
        summary = churn_scores_prune(lookback_days=lookback)
        seconds = time.perf_counter() - t
        out[label] = {"seconds": round(seconds, 2), "examined": summary.examined, "deleted": summary.deleted,
                      "examined_per_s": round(summary.examined / seconds), "load_1m": round(load, 2),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
        print(f"{label:<28} {seconds:7.2f} s  examined {summary.examined:>10,}  deleted {summary.deleted:>10,}  "
              f"({summary.examined / seconds:,.0f} examined/s)  load {load:.1f}", flush=True)
    out["scores_after"] = ChurnScore.objects.count()
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
