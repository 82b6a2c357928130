"""Benchmark: one ordinary day of the whole product on PostgreSQL, every stage timed.

    .venv/bin/python benchmarks/daily_cycle.py --customers 10000 [--family bert] [--active-share 0.04]
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/churn_bench_daily ...  (the default)

The shop (N customers, 8-14 events each over a year, 20 owners with Slack ids, a champion of
--family, yesterday's scores) is built once into the database named by BENCH_DATABASE_URL, which
is kept as a template: each run clones it to `<name>_day` and times the day there, so runs start
from the same state and a rebuild is only needed for another N or family (or --rebuild).
Never point it at real data: the name must contain "bench".

The day, each stage timed with its rows/s and the process's peak RSS after it:
  import     the day's new events of --active-share of the customers (1-3 each: orders, visits,
             reviews), as a JSONL file through the import service (validation, all-or-nothing);
  score      the daily re-run (chunks of SCORE_CHUNK_SIZE in-process; only changed texts encoded);
  policy     the alert policy over today's scores;
  escalate   escalations and follow-ups due;
  deliver    every pending alert delivered through the Slack stand-in (tests/churnbot/slack_standin.py:
             a loopback HTTP server, so each DM is a real Web API call);
  loop       the closed loop (lift, funnel, next-best-action model) computed and stored;
  pages      worklist (manager), high-risk customer page and model report, cold cache, p50/p95.
Scoring runs in-process here; `benchmarks/scoring.py --workers N` measures the same through workers.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.benchdb import bench_database_url, ensure_database, setup_django  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/churn_bench_daily"
N_OWNERS = 20


def peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _admin(url: str):
    import psycopg

    return psycopg.connect(urlparse(url)._replace(path="/postgres").geturl(), autocommit=True)


def _template_state(url: str) -> dict | None:
    """What the template holds (from its marker table), or None when it has not been built."""
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT state FROM bench_daily_cycle").fetchone()
    except psycopg.Error:
        return None
    return json.loads(row[0]) if row else None


def build(args) -> None:
    """The shop as it stands the evening before the timed day (runs in the template database)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from benchmarks import scoring as shop  # synthesise / register_bert / vacuum: the scoring benchmark's shop
    from crm_plugin.models import AccountOwner, Customer
    from crm_plugin.scoring import runs as scoring_runs
    from crm_plugin.scoring import services as ml
    from crm_plugin.scoring import selectors as selectors_ml
    from mlcore.dataset import snapshot_rows
    from mlcore.snapshot import customer_snapshot
    from mlcore.training import train_family

    import numpy as np

    call_command("migrate", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_daily_cycle")
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND "
                    "(tablename LIKE 'crm_plugin_%' OR tablename = 'auth_user')")
        tables = [r[0] for r in cur.fetchall()]
        cur.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    started = time.perf_counter()
    shop.synthesise(args.customers, args.seed)
    User = get_user_model()
    manager = AccountOwner.objects.create(user=User.objects.create_user("manager", password="bench-pass"),
                                          name="Manager", email="manager@bench.example", is_manager=True)
    owners = [AccountOwner.objects.create(user=User.objects.create_user(f"owner{i}", password="bench-pass"),
                                          name=f"Owner {i:02d}", email=f"owner{i}@bench.example", manager=manager,
                                          slack_user_id=f"UOWNER{i:03d}") for i in range(N_OWNERS)]
    ids = "{" + ",".join(str(o.pk) for o in owners) + "}"
    with connection.cursor() as cur:
        cur.execute("UPDATE crm_plugin_customer SET owner_id = (%s::bigint[])[1 + id %% %s]", [ids, N_OWNERS])
    shop.vacuum(["crm_plugin_customer", "crm_plugin_event"])
    print(f"shop: {args.customers:,} customers, events synthesised in {time.perf_counter() - started:.0f} s", flush=True)

    started = time.perf_counter()
    if args.family == "bert":
        version = shop.register_bert(args.seed, settings_max_length())
    else:  # the same quick fit on 400 customers as the scoring benchmark, for a cheaper family
        sample = list(Customer.objects.order_by("pk").values_list("pk", flat=True)[:2000])
        events = selectors_ml.events_frame(customer_ids=sample, before=shop.AS_OF)
        snap = customer_snapshot(events, selectors_ml.customers_frame(customer_ids=sample), shop.AS_OF)
        labels = (snap.features["days_since_last_order"].to_numpy() > 60).astype(np.int8)
        rows = snapshot_rows(snap, labels)
        half = np.arange(len(rows)) % 2 == 0
        trained = train_family(args.family, rows.take(half), rows.take(~half))
        version = ml.model_version_promote(version=ml._register(trained, as_of=shop.AS_OF, horizon_days=90), by=None)
    print(f"champion {version.name} in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    run = scoring_runs.churn_scores_compute(as_of=shop.AS_OF)  # yesterday's run: every text encoded
    print(f"yesterday's scores: {run.n_customers:,} customers in {time.perf_counter() - started:.0f} s", flush=True)
    shop.vacuum(["crm_plugin_churnscore", "crm_plugin_customer", "crm_plugin_encodercacheentry"])
    state = {"customers": args.customers, "family": args.family, "seed": args.seed, "as_of": shop.AS_OF.isoformat()}
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE bench_daily_cycle (state text)")
        cur.execute("INSERT INTO bench_daily_cycle VALUES (%s)", [json.dumps(state)])


def settings_max_length() -> int:
    from django.conf import settings

    return settings.ML_BERT_MAX_LENGTH


def clone(template_url: str, day_url: str) -> None:
    template, day = urlparse(template_url).path.lstrip("/"), urlparse(day_url).path.lstrip("/")
    with _admin(template_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{day}"')
        conn.execute(f'CREATE DATABASE "{day}" TEMPLATE "{template}"')


class Stages:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def run(self, name: str, what: str, fn):
        load = os.getloadavg()[0]
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
        count = result if isinstance(result, int) else result[0]
        self.rows.append({"stage": name, "seconds": round(seconds, 2), "rows": count, "what": what,
                          "rows_per_s": round(count / seconds, 1) if seconds > 0 else None,
                          "peak_rss_mb": peak_mb(), "load_1m": round(load, 2),
                          **({} if isinstance(result, int) else {"detail": result[1]})})
        row = self.rows[-1]
        print(f"{name:<9} {seconds:8.2f} s  {count:>9,} {what:<14} {row['rows_per_s'] or 0:>11,.0f}/s  "
              f"peak RSS {row['peak_rss_mb']:>5} MB  load {load:.1f}", flush=True)
        return result


def the_day(args, state: dict) -> dict:
    from datetime import datetime

    import numpy as np
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings
    from django.utils import timezone

    from churnbot.tasks import alerts_queue_pending
    from crm_plugin.alerts.escalations import alert_escalations_create
    from crm_plugin.alerts.follow_ups import alert_follow_ups_create
    from crm_plugin.alerts.policy import alert_policy_apply
    from crm_plugin.events.importing import events_import_file
    from crm_plugin.loop.services import closed_loop_refresh
    from crm_plugin.models import Alert, Customer
    from crm_plugin.scoring import runs as scoring_runs
    from tests.churnbot.slack_standin import SlackStandin

    yesterday = datetime.fromisoformat(state["as_of"])
    today = yesterday + timedelta(days=1)
    rng = np.random.default_rng(args.seed + 1)
    customers = list(Customer.objects.order_by("pk").values_list("external_id", flat=True))
    active = rng.choice(len(customers), size=max(1, int(len(customers) * args.active_share)), replace=False)
    path = Path(tempfile.gettempdir()) / f"bench-day-{os.getpid()}.jsonl"
    n_events = 0
    with path.open("w") as handle:
        for i in active:
            for k in range(int(rng.integers(1, 4))):
                at = yesterday + timedelta(hours=float(rng.uniform(0, 23.9)))
                kind = ("order", "visit", "visit", "review")[int(rng.integers(0, 4))]
                record = {"customer_id": customers[i], "kind": kind, "occurred_at": at.isoformat(),
                          "source_id": f"day-{customers[i]}-{k}"}
                if kind == "order":
                    record.update(amount=f"{rng.uniform(10, 200):.2f}", quantity=1, attributes={"category": "backpack"})
                elif kind == "review":
                    record.update(rating=int(rng.integers(1, 6)), text="arrived late, box damaged")
                handle.write(json.dumps(record) + "\n")
                n_events += 1

    stages = Stages()
    out: dict = {"customers": len(customers), "active_customers": len(active), "family": state["family"],
                 "chunk_size": settings.SCORE_CHUNK_SIZE, "load_before": os.getloadavg(), "cpus": os.cpu_count()}
    print(f"the day {today:%Y-%m-%d}: {len(customers):,} customers, {len(active):,} active, {n_events:,} new events",
          flush=True)
    stages.run("import", "events", lambda: (events_import_file(path=path, fmt="jsonl").added, {}))
    path.unlink()
    with connection.cursor() as cur:  # as autovacuum would have by the morning run
        cur.execute("ANALYZE crm_plugin_event")

    def score():
        run = scoring_runs.churn_scores_compute(as_of=today)
        return run.n_customers, {"encoded": run.n_encoded}

    stages.run("score", "customers", score)

    def policy():
        summary = alert_policy_apply(as_of=today)
        return summary.considered, {"summary": str(summary)}

    stages.run("policy", "scores", policy)

    def escalate():
        escalations = alert_escalations_create(as_of=today)
        follow_ups = alert_follow_ups_create(today=timezone.localdate(today))
        return escalations.escalated + len(follow_ups), {}

    stages.run("escalate", "alerts", escalate)
    standin = SlackStandin().start()
    try:
        with override_settings(SLACK_BOT_TOKEN="xoxb-bench", SLACK_SIGNING_SECRET="bench-secret",
                               SLACK_API_BASE_URL=standin.api_url, SITE_URL="https://crm.bench.example"):
            def deliver():
                queued = alerts_queue_pending()  # in-process: each delivery runs as it is queued
                sent = Alert.objects.filter(status=Alert.Status.SENT).count()
                return queued, {"sent": sent, "slack_calls": len(standin.calls)}

            stages.run("deliver", "alerts", deliver)
    finally:
        standin.stop()
    stages.run("loop", "snapshot", lambda: (1, {"model_bytes": len(bytes(closed_loop_refresh().model))}))
    out["day_seconds"] = round(sum(r["seconds"] for r in stages.rows), 2)

    client = Client()
    client.force_login(get_user_model().objects.get(username="manager"))
    high = list(Customer.objects.filter(latest_score__band="high").order_by("?").values_list("pk", flat=True)[:args.requests])
    pages = {}
    for label, path_for in (("worklist", lambda i: "/"),
                            ("customer (high risk)", lambda i: f"/customers/{high[i % len(high)]}/"),
                            ("model report", lambda i: "/models/")):
        times = []
        for i in range(args.requests + 2):
            cache.clear()  # cold: nothing kept from the previous request in this process
            started = time.perf_counter()
            response = client.get(path_for(i))
            elapsed = 1000 * (time.perf_counter() - started)
            assert response.status_code == 200, (label, response.status_code)
            if i >= 2:  # two warm-up requests: imports and connection set-up
                times.append(elapsed)
        times.sort()
        pages[label] = {"p50_ms": round(statistics.median(times)), "p95_ms": round(times[round(0.95 * (len(times) - 1))]),
                        "requests": len(times)}
        print(f"{label:<22} p50 {pages[label]['p50_ms']:>6} ms  p95 {pages[label]['p95_ms']:>6} ms  "
              f"(cold cache, {len(times)} requests)", flush=True)
    out.update(stages=stages.rows, pages=pages, load_after=os.getloadavg(), peak_rss_mb=peak_mb())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--family", default="bert", choices=["bert", "lightgbm", "logreg"])
    parser.add_argument("--active-share", type=float, default=0.04, help="customers with new events today (0.03-0.05)")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)  # the child that builds the template
    args = parser.parse_args()
    template_url = bench_database_url(DEFAULT_URL)
    if args.build_only:
        setup_django(template_url)
        build(args)
        return
    ensure_database(template_url)
    state = _template_state(template_url)
    wanted = {"customers": args.customers, "family": args.family, "seed": args.seed}
    if args.rebuild or state is None or any(state.get(k) != v for k, v in wanted.items()):
        print(f"building the shop in {urlparse(template_url).path.lstrip('/')} (once per size and family)", flush=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--build-only", "--customers", str(args.customers),
                        "--family", args.family, "--seed", str(args.seed)],
                       check=True, env={**os.environ, "DEBUG": "false"})
        print(f"built in {time.perf_counter() - started:.0f} s", flush=True)
        state = _template_state(template_url)
    day_url = urlparse(template_url)._replace(path=urlparse(template_url).path + "_day").geturl()
    clone(template_url, day_url)
    setup_django(day_url)
    out = the_day(args, state)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
