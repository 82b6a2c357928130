"""Server time of the worklist and customer pages with 100,000 customers on PostgreSQL.

Builds (once) a dedicated benchmark database with customers, ten scores each, events,
alerts and interventions using set-based SQL, then times full Django requests (URL
resolution, middleware, queries, template rendering) through the test client.

    .venv/bin/python benchmarks/views.py                       # 100,000 customers, 40 requests per case
    .venv/bin/python benchmarks/views.py --customers 20000 --rebuild
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/churn_bench_views .venv/bin/python benchmarks/views.py

The database named by BENCH_DATABASE_URL is created if missing and *rebuilt* with
--rebuild or when its customer count differs: never point it at real data.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.benchdb import ensure_database, setup_django  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/churn_bench_views"



def _build(n_customers: int, n_owners: int, scores_per_customer: int, events_per_customer: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from crm_plugin.models import AccountOwner, ModelVersion
    from crm_plugin.scoring.services import customer_risk_change_refresh

    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE crm_plugin_intervention, crm_plugin_alert, crm_plugin_event, crm_plugin_churnscore, "
            "crm_plugin_customer, crm_plugin_accountowner, crm_plugin_modelversion, auth_user CASCADE"
        )
    User = get_user_model()
    with transaction.atomic():
        owners = []
        for i in range(n_owners):
            user = User.objects.create_user(username=f"owner{i}", password="bench-pass")
            owners.append(AccountOwner.objects.create(user=user, name=f"Owner {i:02d}", email=f"owner{i}@bench.example"))
        manager = User.objects.create_user(username="manager", password="bench-pass")
        AccountOwner.objects.create(user=manager, name="Manager", email="manager@bench.example", is_manager=True)
        version = ModelVersion.objects.create(name="bench-bert", family="bert", artifact_path="bench", is_champion=True)
    owner_ids = "{" + ",".join(str(o.pk) for o in owners) + "}"
    reasons = (
        '[{"code": "recency", "text": "No order for 64 days; usually orders every 20", "weight": 0.31, "evidence": null},'
        ' {"code": "review", "text": "1-star review 12 days ago", "weight": 0.12, "evidence": "arrived broken"}]'
    )
    with connection.cursor() as cur:
        cur.execute("SELECT setseed(0.42)")
        cur.execute(
            """
            INSERT INTO crm_plugin_customer (external_id, name, email, segment, owner_id, first_seen_at, attributes,
                                             value, alerts_snoozed_until, not_a_risk_until, created_at, updated_at)
            SELECT 'B' || g, 'Customer ' || g, 'b' || g || '@mail.example', (ARRAY['vip','regular','new'])[1 + g %% 3],
                   (%s::bigint[])[1 + g %% %s], now() - (30 + g %% 1500) * interval '1 day', '{}',
                   round((random() * 5000)::numeric, 2), NULL, NULL, now(), now()
            FROM generate_series(1, %s) g
            """,
            [owner_ids, n_owners, n_customers],
        )
        # A random walk per customer: base risk plus a drift, so some rose this week.
        cur.execute(
            """
            INSERT INTO crm_plugin_churnscore (customer_id, model_version_id, as_of, probability, band, reasons, created_at)
            SELECT c.id, %s, date_trunc('day', now()) - d * interval '1 day', p,
                   CASE WHEN p >= 0.6 THEN 'high' WHEN p >= 0.3 THEN 'medium' ELSE 'low' END, %s::jsonb, now()
            FROM crm_plugin_customer c
            CROSS JOIN generate_series(0, %s - 1) d
            CROSS JOIN LATERAL (SELECT least(0.99, greatest(0.01,
                 ((hashtext(c.external_id) & 1023) / 1023.0) * 0.8 + ((hashtext(c.external_id || 'd') & 7) - 3.5) * 0.01 * (%s - d)
            )) AS p) prob
            """,
            [version.pk, reasons, scores_per_customer, scores_per_customer],
        )
        cur.execute(
            """
            UPDATE crm_plugin_customer c SET latest_score_id = s.id
            FROM (SELECT DISTINCT ON (customer_id) customer_id, id FROM crm_plugin_churnscore
                  ORDER BY customer_id, as_of DESC) s
            WHERE s.customer_id = c.id
            """
        )
    # What scoring stores next to latest_score (one set-based UPDATE, timed as a scoring cost).
    refresh_started = time.perf_counter()
    customer_risk_change_refresh()
    print(f"risk_change_7d for {n_customers:,} customers in {time.perf_counter() - refresh_started:.1f} s", flush=True)
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO crm_plugin_event (customer_id, kind, occurred_at, amount, quantity, rating, text, attributes,
                                          source_id, imported_at)
            SELECT c.id, k.kind, now() - ((e * 17 + c.id %% 13) * interval '1 day'),
                   CASE WHEN k.kind IN ('order', 'return', 'coupon') THEN 20 + (e * 7) %% 80 END,
                   CASE WHEN k.kind IN ('order', 'return') THEN 1 + e %% 3 END,
                   CASE WHEN k.kind = 'review' THEN 1 + (c.id + e) %% 5 END,
                   CASE WHEN k.kind = 'review' THEN 'Arrived late, box damaged' WHEN k.kind = 'ticket' THEN 'Where is my refund?' ELSE '' END,
                   CASE WHEN k.kind = 'order' THEN '{"category": "garden"}'::jsonb
                        WHEN k.kind = 'ticket' THEN '{"status": "open", "closed_at": null}'::jsonb
                        WHEN k.kind = 'visit' THEN '{"pages": 5, "duration_s": 120}'::jsonb ELSE '{}'::jsonb END,
                   'bench-' || c.id || '-' || e, now()
            FROM crm_plugin_customer c
            CROSS JOIN generate_series(1, %s) e
            CROSS JOIN LATERAL (SELECT (ARRAY['order','order','order','visit','visit','review','ticket','return','coupon'])[1 + (e + c.id) %% 9] AS kind) k
            """,
            [events_per_customer],
        )
        cur.execute(
            """
            INSERT INTO crm_plugin_alert (customer_id, owner_id, score_id, kind, status, idempotency_key, is_control, payload,
                                          attempts, last_error, slack_channel, slack_ts, created_at, sent_at)
            SELECT c.id, c.owner_id, c.latest_score_id, 'high_risk', 'sent', 'bench-' || c.id, false, '{}', 1, '', '', '',
                   now() - (c.id % 20) * interval '1 day', now()
            FROM crm_plugin_customer c WHERE c.id % 10 = 0
            """
        )
        cur.execute(
            """
            INSERT INTO crm_plugin_intervention (customer_id, action, note, created_by_id, created_at, source, follow_up_on,
                                                 outcome, outcome_note)
            SELECT c.id, 'call', 'Called, offered free returns', NULL, now() - (c.id % 40) * interval '1 day', 'crm',
                   (now() + (c.id % 14 - 7) * interval '1 day')::date, CASE WHEN c.id % 3 = 0 THEN 'retained' ELSE '' END, ''
            FROM crm_plugin_customer c WHERE c.id % 7 = 0
            """
        )
        cur.execute("ANALYZE")
    print(f"built {n_customers:,} customers in {time.perf_counter() - started:.0f} s", flush=True)


def _time(client, path: str, n: int) -> tuple[float, float]:
    for _ in range(3):  # warm caches and the connection
        client.get(path)
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(round(0.95 * len(samples))) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--owners", type=int, default=20)
    parser.add_argument("--scores", type=int, default=10, help="score history per customer")
    parser.add_argument("--events", type=int, default=20, help="events per customer")
    parser.add_argument("--requests", type=int, default=40, help="timed requests per case")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    ensure_database(url)
    setup_django(url)
    from django.core.management import call_command
    from django.test import Client

    from crm_plugin.models import AccountOwner, ChurnScore, Customer

    call_command("migrate", verbosity=0)
    if args.rebuild or Customer.objects.count() != args.customers:
        _build(args.customers, args.owners, args.scores, args.events)

    manager = AccountOwner.objects.get(is_manager=True).user
    owner = AccountOwner.objects.filter(is_manager=False).order_by("pk").first().user
    rng = random.Random(7)
    ids = list(Customer.objects.filter(latest_score__isnull=False).values_list("pk", flat=True)[:5000])
    manager_client, owner_client = Client(), Client()
    manager_client.force_login(manager)
    owner_client.force_login(owner)

    print(f"{Customer.objects.count():,} customers, {ChurnScore.objects.count():,} scores; "
          f"{args.requests} requests per case after 3 warm-up requests")
    cases = [
        ("worklist, manager (all customers)", manager_client, "/"),
        ("worklist, manager, band=high", manager_client, "/?band=high"),
        ("worklist, manager, risk rose", manager_client, "/?rose=on"),
        ("worklist, manager, risk rose + no action", manager_client, "/?rose=on&no_action=on"),
        ("worklist, manager, page 500", manager_client, "/?page=500"),
        ("worklist, owner (own book)", owner_client, "/"),
    ]
    print("| page | p50 ms | p95 ms |\n| --- | ---: | ---: |")
    for label, client, path in cases:
        p50, p95 = _time(client, path, args.requests)
        print(f"| {label} | {p50:.0f} | {p95:.0f} |", flush=True)
    samples = []
    for pk in rng.sample(ids, min(len(ids), args.requests + 3)):
        started = time.perf_counter()
        assert manager_client.get(f"/customers/{pk}/").status_code == 200
        samples.append((time.perf_counter() - started) * 1000)
    samples = sorted(samples[3:])
    print(f"| customer page (random customers) | {statistics.median(samples):.0f} | "
          f"{samples[max(0, int(round(0.95 * len(samples))) - 1)]:.0f} |")


if __name__ == "__main__":
    main()
