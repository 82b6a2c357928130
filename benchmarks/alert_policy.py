"""Benchmark: the alert policy (`alert_policy_apply`) over one day's scores on PostgreSQL.

Builds (once per size) a shop in its own database with set-based SQL: N customers across 20 owners
(two in digest mode), eight days of daily scores per customer (a random walk, so some cross into
high risk today and some rise sharply), a last order per customer (a quarter have lapsed), 2% with
a risk alert five days ago (cooldown), 1% snoozed, 1% without owner. Then times the policy for
today inside a transaction that is rolled back, so every repeat decides the same day afresh.
Prints the time, scores/s and a fingerprint of the decisions (alert kind, status, baseline per
customer), so two versions of the policy can be compared for the same decisions.

    .venv/bin/python benchmarks/alert_policy.py --customers 100000 [--repeat 3] [--rebuild]
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/churn_bench_policy ...

The database (default churn_bench_policy) is created if missing and rebuilt when its customer
count differs or with --rebuild: never point it at real data.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.benchdb import bench_database_url, ensure_database, setup_django  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/churn_bench_policy"
DAYS = 8


def build(n_customers: int, n_owners: int = 20) -> None:
    """The policy's inputs for `n_customers`, all with set-based SQL (a few seconds at 100k)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from crm_plugin.models import AccountOwner, ModelVersion

    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE crm_plugin_intervention, crm_plugin_alert, crm_plugin_riskfeedback, crm_plugin_event, "
            "crm_plugin_churnscore, crm_plugin_encodercacheentry, crm_plugin_scoringrun, crm_plugin_customer, "
            "crm_plugin_accountowner, crm_plugin_modelversion, auth_user RESTART IDENTITY CASCADE"
        )
    User = get_user_model()
    with transaction.atomic():
        manager_user = User.objects.create_user(username="manager", password="bench-pass")
        manager = AccountOwner.objects.create(user=manager_user, name="Manager", email="manager@bench.example",
                                              is_manager=True)
        owners = []
        for i in range(n_owners):
            user = User.objects.create_user(username=f"owner{i}", password="bench-pass")
            owners.append(AccountOwner.objects.create(
                user=user, name=f"Owner {i:02d}", email=f"owner{i}@bench.example", manager=manager,
                alert_mode="digest" if i < 2 else "immediate", slack_user_id=f"UBENCH{i:04d}"))
        ModelVersion.objects.create(name="bench-policy", family="logreg", artifact_path="bench", is_champion=True)
    owner_ids = "{" + ",".join(str(o.pk) for o in owners) + "}"
    with connection.cursor() as cur:
        cur.execute("SELECT id FROM crm_plugin_modelversion")
        version = cur.fetchone()[0]
        cur.execute(
            """
            INSERT INTO crm_plugin_customer (external_id, name, email, segment, owner_id, first_seen_at, attributes,
                                             value, alerts_snoozed_until, not_a_risk_until, created_at, updated_at)
            SELECT 'P' || g, 'Customer ' || g, 'p' || g || '@mail.example', (ARRAY['vip','regular','new'])[1 + g %% 3],
                   CASE WHEN g %% 100 = 7 THEN NULL ELSE (%s::bigint[])[1 + g %% %s] END,
                   date_trunc('day', now()) - (400 + g %% 300) * interval '1 day', '{}',
                   round((random() * 5000)::numeric, 2),
                   CASE WHEN g %% 100 = 3 THEN now() + interval '10 days' END, NULL, now(), now()
            FROM generate_series(1, %s) g
            """,
            [owner_ids, n_owners, n_customers],
        )
        # Day d ago: a base risk plus a drift per day; the drift's spread makes a few % cross into
        # high today and a few rise by 0.2+ within the week.
        cur.execute(
            """
            INSERT INTO crm_plugin_churnscore (customer_id, model_version_id, as_of, probability, band, reasons, created_at)
            SELECT c.id, %s, date_trunc('day', now()) - d * interval '1 day', p,
                   CASE WHEN p >= 0.6 THEN 'high' WHEN p >= 0.3 THEN 'medium' ELSE 'low' END,
                   '[{"code": "recency", "text": "no order for 64 days (usually every 20)", "weight": 0.3, "evidence": null}]'::jsonb,
                   now() - d * interval '1 day'
            FROM crm_plugin_customer c
            CROSS JOIN generate_series(0, %s - 1) d
            CROSS JOIN LATERAL (SELECT least(0.99, greatest(0.01,
                 ((hashtext(c.external_id) & 1023) / 1023.0) * 0.75
                 + ((hashtext(c.external_id || 'd') & 31) - 15.5) * 0.002 * (%s - 1 - d))) AS p) prob
            """,
            [version, DAYS, DAYS],
        )
        cur.execute(
            """
            UPDATE crm_plugin_customer c SET latest_score_id = s.id
            FROM crm_plugin_churnscore s WHERE s.customer_id = c.id AND s.as_of = date_trunc('day', now())
            """
        )
        # The last order: a quarter of the customers have not ordered for over 90 days (lapsed).
        cur.execute(
            """
            INSERT INTO crm_plugin_event (customer_id, kind, occurred_at, amount, quantity, rating, text, attributes,
                                          source_id, imported_at)
            SELECT c.id, 'order', date_trunc('day', now()) - ((c.id % 120) + 1) * interval '1 day', 40, 1, NULL, '',
                   '{}'::jsonb, 'policy-' || c.id, now()
            FROM crm_plugin_customer c
            """
        )
        # 2% were alerted five days ago: today they are inside the cooldown.
        cur.execute(
            """
            INSERT INTO crm_plugin_alert (customer_id, owner_id, score_id, kind, status, idempotency_key, is_control,
                                          payload, attempts, last_error, slack_channel, slack_ts, created_at, sent_at)
            SELECT c.id, c.owner_id, s.id, 'high_risk', 'sent', 'bench-old-' || c.id, false, '{}', 1, '', '', '',
                   s.as_of, s.as_of
            FROM crm_plugin_customer c JOIN crm_plugin_churnscore s
                 ON s.customer_id = c.id AND s.as_of = date_trunc('day', now()) - interval '5 days'
            WHERE c.id % 50 = 1 AND c.owner_id IS NOT NULL
            """
        )
        cur.execute("VACUUM ANALYZE crm_plugin_customer, crm_plugin_churnscore, crm_plugin_event, crm_plugin_alert")


def decisions_fingerprint(alert_ids: list[int]) -> tuple[str, dict]:
    from collections import Counter

    from crm_plugin.models import Alert

    rows = sorted(tuple(str(v) for v in row) for row in Alert.objects.filter(pk__in=alert_ids).values_list(
        "customer_id", "kind", "status", "is_control", "score_id", "owner_id", "payload__baseline",
        "payload__next_best_action__action"))
    counts = Counter((kind, status) for _, kind, status, *_ in rows)
    digest = hashlib.sha1(repr(rows).encode()).hexdigest()[:16]
    return digest, {f"{k}/{s}": n for (k, s), n in sorted(counts.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the first timed run here")
    args = parser.parse_args()
    url = bench_database_url(DEFAULT_URL)
    ensure_database(url)
    setup_django(url, migrate=True)
    from django.db import transaction
    from django.utils import timezone

    from crm_plugin.alerts.policy import alert_policy_apply
    from crm_plugin.models import Alert, ChurnScore, Customer

    if args.rebuild or Customer.objects.count() != args.customers or not Alert.objects.filter(idempotency_key__startswith="bench-old-").exists():
        t = time.perf_counter()
        build(args.customers)
        print(f"built {args.customers:,} customers x {DAYS} days of scores in {time.perf_counter() - t:.1f} s", flush=True)
    as_of = ChurnScore.objects.order_by("-as_of").values_list("as_of", flat=True).first()
    n_scores = ChurnScore.objects.filter(as_of=as_of).count()
    times, result = [], {}
    for i in range(args.repeat):
        load = os.getloadavg()[0]
        profiler = None
        if args.profile and i == 0:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        t = time.perf_counter()
        with transaction.atomic():
            summary = alert_policy_apply(as_of=as_of)
            seconds = time.perf_counter() - t
            digest, counts = decisions_fingerprint(summary.alert_ids)
            transaction.set_rollback(True)  # the next repeat decides the same day again
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(args.profile))
        times.append(seconds)
        result = {"summary": str(summary), "fingerprint": digest, "counts": counts}
        print(f"run {i + 1}: {seconds:.2f} s ({n_scores / seconds:,.0f} scores/s), load {load:.2f}, "
              f"fingerprint {digest}", flush=True)
    print(json.dumps({"customers": args.customers, "scores_today": n_scores, "seconds": [round(t, 2) for t in times],
                      "best_s": round(min(times), 2), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "load_avg": os.getloadavg(), "as_of": timezone.localtime(as_of).isoformat(), **result}, indent=1))


if __name__ == "__main__":
    main()
