"""Benchmark: `/churn customer <id>` latency through the full signed HTTP path, on PostgreSQL.

Builds (once) a dedicated database with 10,000 customers, 1,000,000 events, a year of weekly
score history and some open actions, loaded with COPY; then sends signed slash-command
requests through Django's test client (CSRF checks on, Bolt's signature check, the real
listener, selectors and Block Kit builders) and reports p50/p95/p99.

    .venv/bin/python benchmarks/slack_lookup.py [--requests 500] [--rebuild]

The database is BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/churn_bench_slack);
it is created if missing and never shared with the app or the tests.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.benchdb import ensure_database  # noqa: E402

N_CUSTOMERS = 10_000
N_EVENTS = 1_000_000
N_OWNERS = 20
SCORE_WEEKS = 52
SECRET = "bench-signing-secret"



def build_data(rng: random.Random) -> None:
    """Load owners, customers, events, scores and interventions with COPY (about a minute)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from crm_plugin.models import AccountOwner, ModelVersion

    now = datetime.now(dt_timezone.utc).replace(microsecond=0)
    with transaction.atomic():
        users = get_user_model().objects.bulk_create(
            [get_user_model()(username=f"owner{i}", email=f"owner{i}@shop.example") for i in range(N_OWNERS)])
        owners = AccountOwner.objects.bulk_create([
            AccountOwner(user=u, name=f"Owner {i}", email=u.email, slack_user_id=f"UOWNER{i:03d}", is_manager=(i == 0))
            for i, u in enumerate(users)])
        version = ModelVersion.objects.create(name="bench-logreg", family="logreg", artifact_path="versions/bench")
        with connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy("COPY crm_plugin_customer (external_id, name, email, segment, owner_id, first_seen_at, "
                          "attributes, value, created_at, updated_at) FROM STDIN") as copy:
                for i in range(N_CUSTOMERS):
                    copy.write_row((f"C{i:06d}", f"Customer {i}", f"c{i:06d}@mail.example", "regular",
                                    owners[i % N_OWNERS].pk, now - timedelta(days=400), "{}", "120.00", now, now))
            cursor.execute("SELECT id FROM crm_plugin_customer ORDER BY id")
            customer_ids = [row[0] for row in cursor.fetchall()]
            kinds = ["order"] * 4 + ["visit"] * 4 + ["review", "ticket"]
            with raw.copy("COPY crm_plugin_event (customer_id, kind, occurred_at, amount, quantity, rating, text, "
                          "attributes, source_id, imported_at) FROM STDIN") as copy:
                for n in range(N_EVENTS):
                    kind = kinds[n % len(kinds)]
                    when = now - timedelta(minutes=rng.randrange(365 * 24 * 60))
                    copy.write_row((
                        customer_ids[rng.randrange(N_CUSTOMERS)], kind, when,
                        "42.50" if kind == "order" else None, 1 if kind == "order" else None,
                        rng.randint(1, 5) if kind == "review" else None,
                        "arrived broken" if kind == "review" else "refund not processed" if kind == "ticket" else "",
                        '{"pages": 3}' if kind == "visit" else "{}", f"bench-{n}", now))
            reasons = json.dumps([
                {"code": "recency", "text": "no order for 64 days (usually every 20)", "weight": 0.31, "evidence": None},
                {"code": "review", "text": "1-star review: 'arrived broken'", "weight": 0.12, "evidence": "arrived broken"},
                {"code": "ticket", "text": "open ticket: refund not processed", "weight": 0.08, "evidence": None},
            ])
            with raw.copy("COPY crm_plugin_churnscore (customer_id, model_version_id, as_of, probability, band, "
                          "reasons, created_at) FROM STDIN") as copy:
                for cid in customer_ids:
                    p = rng.random() * 0.5
                    for week in range(SCORE_WEEKS, -1, -1):
                        p = min(max(p + rng.gauss(0, 0.04), 0.01), 0.99)
                        band = "high" if p >= 0.6 else "medium" if p >= 0.3 else "low"
                        copy.write_row((cid, version.pk, now - timedelta(weeks=week), round(p, 4), band, reasons, now))
            cursor.execute(
                "UPDATE crm_plugin_customer c SET latest_score_id = s.id FROM ("
                " SELECT DISTINCT ON (customer_id) id, customer_id FROM crm_plugin_churnscore"
                " ORDER BY customer_id, as_of DESC, id DESC) s WHERE s.customer_id = c.id")
            with raw.copy("COPY crm_plugin_intervention (customer_id, action, note, created_by_id, created_at, source, "
                          "outcome, outcome_note) FROM STDIN") as copy:
                for cid in rng.sample(customer_ids, N_CUSTOMERS // 5):
                    copy.write_row((cid, "call", "left a voicemail", users[0].pk, now - timedelta(days=3), "crm", "", ""))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def sign(body: str, timestamp: int) -> str:
    return "v0=" + hmac.new(SECRET.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rebuild", action="store_true", help="drop and reload the benchmark data")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/churn_bench_slack")
    ensure_database(url)

    from tests.churnbot.slack_standin import SlackStandin

    standin = SlackStandin().start()  # answers auth.test (Bolt's first request) and nothing else is called
    os.environ.update({
        "DATABASE_URL": url, "DEBUG": "false", "LOG_LEVEL": "WARNING", "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_BASE_URL": standin.api_url, "DJANGO_SETTINGS_MODULE": "config.settings",
    })
    os.environ.pop("CELERY_BROKER_URL", None)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from crm_plugin.models import Customer, Event

    if args.rebuild:
        call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0)
    rng = random.Random(args.seed)
    if Customer.objects.count() < N_CUSTOMERS:
        call_command("flush", interactive=False, verbosity=0)
        started = time.perf_counter()
        build_data(rng)
        print(f"loaded data in {time.perf_counter() - started:.0f} s")
    print(f"{Customer.objects.count():,} customers, {Event.objects.count():,} events, "
          f"PostgreSQL {connection.pg_version // 10000}")

    client = Client(enforce_csrf_checks=True)
    customers = list(Customer.objects.values_list("external_id", "owner__slack_user_id"))

    def request(external_id: str, user_id: str) -> float:
        body = urlencode({"command": "/churn", "text": f"customer {external_id}", "user_id": user_id,
                          "team_id": "T1", "channel_id": "C1", "response_url": standin.url + "/r",
                          "trigger_id": "t"})
        ts = int(time.time())
        started = time.perf_counter()
        response = client.post("/slack/events", data=body, content_type="application/x-www-form-urlencoded",
                               HTTP_X_SLACK_REQUEST_TIMESTAMP=str(ts), HTTP_X_SLACK_SIGNATURE=sign(body, ts))
        elapsed = time.perf_counter() - started
        if response.status_code != 200 or "Churn probability" not in response.content.decode():
            raise SystemExit(f"unexpected answer {response.status_code}: {response.content[:300]!r}")
        return elapsed

    for external_id, owner in rng.sample(customers, 20):  # warm-up: connections, Bolt's auth.test
        request(external_id, owner)
    timings = []
    for i in range(args.requests):
        external_id, owner = rng.choice(customers)
        # Half as the customer's owner, half as the manager (who sees every book).
        timings.append(request(external_id, owner if i % 2 else "UOWNER000"))
    timings_ms = sorted(t * 1000 for t in timings)
    q = statistics.quantiles(timings_ms, n=100)
    print(f"/churn customer over {len(timings_ms)} signed requests: p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, "
          f"p99 {q[98]:.1f} ms, max {timings_ms[-1]:.1f} ms (target p95 < 150 ms)")
    standin.stop()


if __name__ == "__main__":
    main()
