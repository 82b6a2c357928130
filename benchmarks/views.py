"""The CRM worklist, customer page and Slack's /churn under load: 8 clients against gunicorn, on PostgreSQL.

Builds (once) a benchmark database of its own - owners, customers with their stored ranking
columns, a short score history each, a few events, alerts and actions - with set-based SQL
(`INSERT ... SELECT generate_series`, indexes built after the rows, one transaction), then starts
gunicorn as docs/production.md runs it (`--workers 3`, DJANGO_ENV=production) and sends each case
from 8 concurrent clients over loopback HTTP: the CRM pages with a signed-in session, `/churn`
as signed Slack requests (Bolt checks the signature; the Web API it calls at start-up is a
loopback stand-in). Prints p50/p95 per case with the machine's load average.

    .venv/bin/python benchmarks/views.py                                  # 100,000 customers
    BENCH_DATABASE_URL=postgres://root@127.0.0.1:5432/churn_bench_1m \\
        .venv/bin/python benchmarks/views.py --customers 1000000
    .venv/bin/python benchmarks/views.py --build-only --rebuild           # (re)build, measure nothing

The database named by BENCH_DATABASE_URL (its name must contain "bench") is created if missing
and *rebuilt* with --rebuild or when its customer count differs: never point it at real data.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.benchdb import bench_database_url, ensure_database, setup_django  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/churn_bench_views"
SECRET_KEY = "bench-secret-key-not-for-production-0123456789abcdef"
SIGNING_SECRET = "bench-signing-secret"
PORT = 8766
TABLES = ("crm_plugin_customer", "crm_plugin_churnscore", "crm_plugin_event", "crm_plugin_alert",
          "crm_plugin_intervention")


# --- building the database ----------------------------------------------------------------------

def _indexes_drop(cur) -> list[str]:
    """Drop the plain (non-constraint) indexes of the big tables; returns the statements that rebuild them.
    Building an index once over a million rows is far cheaper than updating it row by row."""
    cur.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' AND i.tablename = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        [list(TABLES)],
    )
    rows = cur.fetchall()
    for name, _ in rows:
        cur.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in rows]


def _build(*, n_customers: int, n_owners: int, scores: int, events: int) -> None:
    """Owners (ana first, maria the manager), customers, `scores` daily scores and `events` events each,
    alerts for 10% and an action for 1 in 7, with every stored column the pages read already right -
    what scoring, the import and logging actions would have left. One transaction: an interrupted
    build leaves the previous database as it was."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction

    from crm_plugin.models import AccountOwner, ModelVersion

    started = time.perf_counter()
    User = get_user_model()
    password = make_password("bench-pass")
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
        # Foreign keys are consistent by construction; skipping their per-row triggers halves the build.
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if cur.fetchone()[0]:
            cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute(
            "TRUNCATE crm_plugin_intervention, crm_plugin_riskfeedback, crm_plugin_alert, crm_plugin_event, "
            "crm_plugin_encodercacheentry, crm_plugin_churnscore, crm_plugin_customer, crm_plugin_accountowner, "
            "crm_plugin_scoringrun, crm_plugin_loopsnapshot, crm_plugin_modelversion, django_session, auth_user "
            "RESTART IDENTITY CASCADE"
        )
        rebuild = _indexes_drop(cur)
        names = [("ana", "Ana Alvarez")] + [(f"owner{i:02d}", f"Owner {i:02d}") for i in range(1, n_owners)]
        users = User.objects.bulk_create(
            [User(username=u, email=f"{u}@bench.example", password=password) for u, _ in names]
            + [User(username="maria", email="maria@bench.example", password=password, is_staff=True)])
        maria = AccountOwner.objects.create(user=users[-1], name="Maria Rossi", email="maria@bench.example",
                                            slack_user_id="U0BENCHMARIA", is_manager=True)
        owners = AccountOwner.objects.bulk_create([
            AccountOwner(user=user, name=name, email=user.email, slack_user_id=f"U0BENCH{i:03d}", manager=maria)
            for i, (user, (_, name)) in enumerate(zip(users, names))])
        version = ModelVersion.objects.create(name="bench-logreg", family="logreg", artifact_path="bench",
                                              is_champion=True)
        owner_ids = [o.pk for o in owners]

        # One row per customer with everything drawn from hashes of its id (deterministic, no Python loop).
        # Probabilities are skewed low (cube of a uniform), a fifth of the customers have lapsed.
        cur.execute(
            """
            CREATE TEMP TABLE bench_c ON COMMIT DROP AS
            SELECT g AS id, (%s::bigint[])[1 + g %% %s] AS owner_id,
                   round((20 + (hashint4(g * 31) & 65535) / 65535.0 * 4980)::numeric, 2) AS value,
                   (hashint4(g * 17) & 1023) < 205 AS lapsed,
                   (0.02 + 0.97 * power((hashint4(g) & 1048575) / 1048575.0, 3))::float8 AS base,
                   (((hashint4(g * 7 + 3) & 15) - 7.5) * 0.004)::float8 AS drift,
                   date_trunc('hour', now()) - ((hashint4(g * 13 + 1) & 2047)
                       + CASE WHEN (hashint4(g * 17) & 1023) < 205 THEN 150 * 24 ELSE 0 END) * interval '1 hour'
                       AS last_order_at,
                   (hashint4(g * 11) & 1023) < 102 AS alerted, (hashint4(g * 19) & 1023) < 146 AS acted
            FROM generate_series(1, %s) g
            """,
            [owner_ids, n_owners, n_customers],
        )
        probability = "least(0.99, greatest(0.01, c.base - c.drift * {d}))"
        p0 = probability.format(d=0)
        baseline = probability.format(d=min(scores - 1, 7))
        cur.execute(
            f"""
            INSERT INTO crm_plugin_customer (id, external_id, name, email, segment, owner_id, first_seen_at, attributes,
                value, latest_score_id, latest_probability, value_at_risk, risk_change_7d, lifecycle_stage,
                last_order_at, last_action_at, created_at, updated_at)
            SELECT c.id, 'B' || lpad(c.id::text, 7, '0'), 'Customer ' || c.id, 'b' || c.id || '@mail.example',
                   (ARRAY['vip', 'regular', 'bargain_hunter', 'new'])[1 + (hashint4(c.id * 5) & 3)], c.owner_id,
                   now() - (400 + c.id %% 1000) * interval '1 day', '{{}}', c.value,
                   (c.id - 1) * %s + 1, {p0}, {p0} * c.value::float8,
                   {f"{p0} - {baseline}" if scores > 1 else "NULL"},
                   CASE WHEN c.lapsed THEN 'lapsed' WHEN {p0} >= 0.3 THEN 'at_risk' WHEN (hashint4(c.id * 3) & 15) < 2 THEN 'new'
                        WHEN (hashint4(c.id * 3) & 15) < 3 THEN 'won_back' ELSE 'active' END,
                   c.last_order_at,
                   CASE WHEN c.acted THEN date_trunc('hour', now()) - (c.id %% 40) * interval '1 day' END,
                   now(), now()
            FROM bench_c c
            """,
            [scores],
        )
        reasons = ('[{"code": "no_recent_order", "text": "no order for 64 days (usually every 20)", "weight": 0.31,'
                   ' "evidence": {"days_since_last_order": 64, "usual_gap_days": 20}},'
                   ' {"code": "bad_review", "text": "1-star review 12 days ago: \'arrived broken\'", "weight": 0.12,'
                   ' "evidence": {"rating": 1, "days_ago": 12, "quote": "arrived broken"}}]')
        p_d = probability.format(d="d")
        cur.execute(
            f"""
            INSERT INTO crm_plugin_churnscore (id, customer_id, model_version_id, as_of, probability, band, reasons,
                                               created_at)
            SELECT (c.id - 1) * %s + d + 1, c.id, %s, date_trunc('day', now()) - d * interval '1 day', {p_d},
                   CASE WHEN {p_d} >= 0.6 THEN 'high' WHEN {p_d} >= 0.3 THEN 'medium' ELSE 'low' END, %s::jsonb, now()
            FROM bench_c c CROSS JOIN generate_series(0, %s - 1) d
            """,
            [scores, version.pk, reasons, scores],
        )
        # The newest event is the last order; the others go back three weeks apart.
        cur.execute(
            """
            INSERT INTO crm_plugin_event (id, customer_id, kind, occurred_at, amount, quantity, rating, text, attributes,
                                          source_id, imported_at)
            SELECT (c.id - 1) * %s + e, c.id, k.kind, c.last_order_at - (e - 1) * interval '21 days',
                   CASE WHEN k.kind IN ('order', 'return', 'coupon') THEN 20 + (e * 7) %% 80 END,
                   CASE WHEN k.kind IN ('order', 'return') THEN 1 + e %% 3 END,
                   CASE WHEN k.kind = 'review' THEN 1 + (c.id + e) %% 5 END,
                   CASE WHEN k.kind = 'review' THEN 'Arrived late, box damaged'
                        WHEN k.kind = 'ticket' THEN 'Where is my refund?' ELSE '' END,
                   CASE WHEN k.kind = 'order' THEN '{"category": "garden"}'::jsonb
                        WHEN k.kind = 'ticket' THEN '{"status": "open", "closed_at": null}'::jsonb
                        WHEN k.kind = 'visit' THEN '{"pages": 5, "duration_s": 120}'::jsonb ELSE '{}'::jsonb END,
                   'bench-' || c.id || '-' || e, now()
            FROM bench_c c CROSS JOIN generate_series(1, %s) e
            CROSS JOIN LATERAL (SELECT CASE WHEN e = 1 THEN 'order' ELSE (ARRAY['order', 'visit', 'visit', 'review',
                'ticket', 'order', 'return', 'coupon', 'visit'])[1 + (e + c.id) %% 9] END AS kind) k
            """,
            [events, events],
        )
        cur.execute(
            """
            INSERT INTO crm_plugin_alert (customer_id, owner_id, score_id, kind, status, idempotency_key, is_control,
                                          payload, attempts, last_error, slack_channel, slack_ts, created_at, sent_at)
            SELECT c.id, c.owner_id, (c.id - 1) * %s + 1, 'high_risk', 'sent', 'bench-' || c.id, false, '{}', 1,
                   '', '', '', now() - (c.id %% 20) * interval '1 day', now()
            FROM bench_c c WHERE c.alerted
            """,
            [scores],
        )
        cur.execute(
            """
            INSERT INTO crm_plugin_intervention (customer_id, action, note, created_by_id, created_at, source,
                                                 follow_up_on, outcome, outcome_note)
            SELECT c.id, 'call', 'Called, offered free returns', NULL,
                   date_trunc('hour', now()) - (c.id % 40) * interval '1 day', 'crm',
                   (now() + (c.id % 14 - 7) * interval '1 day')::date,
                   CASE WHEN c.id % 3 = 0 THEN 'retained' ELSE '' END, ''
            FROM bench_c c WHERE c.acted
            """
        )
        for table in ("crm_plugin_customer", "crm_plugin_churnscore", "crm_plugin_event"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        rows_done = time.perf_counter()
        for statement in rebuild:
            cur.execute(statement)
    indexes_done = time.perf_counter()
    connection.close()
    with connection.cursor() as cur:  # autocommit again: VACUUM cannot run in a transaction
        # What autovacuum leaves after a day's writes: statistics, and a visibility map for index-only scans.
        cur.execute("VACUUM ANALYZE")
    print(f"built {n_customers:,} customers ({scores} scores, {events} events each): rows "
          f"{rows_done - started:.0f} s, {len(rebuild)} indexes {indexes_done - rows_done:.0f} s, "
          f"vacuum/analyze {time.perf_counter() - indexes_done:.0f} s, total {time.perf_counter() - started:.0f} s",
          flush=True)


# --- the load -------------------------------------------------------------------------------------

class Case:
    def __init__(self, label: str, method: str, paths: list[str], headers: dict, expect: bytes,
                 body_for=None) -> None:
        self.label, self.method, self.paths, self.headers, self.expect = label, method, paths, headers, expect
        self.body_for = body_for  # path -> (body, extra headers) for signed Slack requests


def _request(case: Case, path: str) -> float:
    body, headers = None, dict(case.headers)
    if case.body_for is not None:
        body, extra = case.body_for(path)
        headers.update(extra)
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    conn.request(case.method, "/slack/events" if case.body_for else path, body=body, headers=headers)
    response = conn.getresponse()
    content = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    conn.close()
    if response.status != 200 or case.expect not in content:
        raise SystemExit(f"{case.label}: {path} answered {response.status}: {content[:300]!r}")
    return elapsed


def _run_case(case: Case, *, requests: int, clients: int) -> list[float]:
    """`requests` requests from `clients` threads at once (each sends its next as soon as one returns)."""
    lock, samples, next_index = threading.Lock(), [], iter(range(requests + clients))
    errors: list[BaseException] = []

    def client() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            try:
                elapsed = _request(case, case.paths[i % len(case.paths)])
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)
                return
            if i >= clients:  # the first round warms each worker for this case
                with lock:
                    samples.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return samples


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(round(q * len(ordered))) - 1)]


def _gunicorn(url: str, standin_url: str) -> subprocess.Popen:
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_ENV": "production", "SECRET_KEY": SECRET_KEY, "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_BASE_URL": standin_url,
    }
    python = ROOT / ".venv" / "bin"
    subprocess.run([str(python / "python"), "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                   check=True)
    server = subprocess.Popen(
        [str(python / "gunicorn"), "config.wsgi:application", "--bind", f"127.0.0.1:{PORT}", "--workers", "3",
         "--timeout", "30"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
            conn.request("GET", "/login/", headers={"X-Forwarded-Proto": "https"})
            if conn.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit(f"gunicorn did not answer: {server.stderr.read().decode()[-2000:]}")


def _session_cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def _slack_body(text: str, user_id: str) -> tuple[str, dict]:
    body = urlencode({"command": "/churn", "text": text, "user_id": user_id, "team_id": "T1", "channel_id": "C1",
                      "response_url": "http://127.0.0.1:9/r", "trigger_id": "t"})
    ts = str(int(time.time()))
    signature = "v0=" + hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature,
                  "Content-Type": "application/x-www-form-urlencoded"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--owners", type=int, default=20, help="account managers; the first is ana")
    parser.add_argument("--scores", type=int, default=3, help="daily scores per customer")
    parser.add_argument("--events", type=int, default=4, help="events per customer")
    parser.add_argument("--requests", type=int, default=80, help="timed requests per case (after one warm-up round)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--only", default="", help="run only the cases whose label contains this text")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()

    url = bench_database_url(DEFAULT_URL)
    ensure_database(url)
    setup_django(url, SECRET_KEY=SECRET_KEY, LOG_LEVEL="WARNING")
    from django.core.management import call_command
    from django.db import connection

    from crm_plugin.loop.services import closed_loop_refresh
    from crm_plugin.models import AccountOwner, ChurnScore, Customer, Event, LoopSnapshot
    from crm_plugin.web.selectors import WORKLIST_SORTS
    from tests.churnbot.slack_standin import SlackStandin

    call_command("migrate", verbosity=0)
    if args.rebuild or Customer.objects.count() != args.customers:
        _build(n_customers=args.customers, n_owners=args.owners, scores=args.scores, events=args.events)
    newest = LoopSnapshot.objects.order_by("-pk").first()
    if newest is None or time.time() - newest.created_at.timestamp() > 60:
        # What the daily job stores; a page finding none (or one older than 10 minutes) would compute it.
        started = time.perf_counter()
        closed_loop_refresh()
        print(f"closed loop stored in {time.perf_counter() - started:.1f} s", flush=True)
    if args.build_only:
        return

    ana = AccountOwner.objects.get(user__username="ana")
    maria = AccountOwner.objects.get(user__username="maria")
    book = Customer.objects.filter(owner=ana).count()
    rng = random.Random(7)
    sample = list(Customer.objects.filter(owner=ana).values_list("pk", "external_id")[:20_000])
    picks = rng.sample(sample, min(len(sample), args.requests + args.clients))
    headers = {"X-Forwarded-Proto": "https", "Host": "127.0.0.1"}
    cookie = {"ana": _session_cookie(ana.user), "maria": _session_cookie(maria.user)}
    connection.close()

    cases: list[Case] = []
    for who in ("maria", "ana"):
        page = {**headers, "Cookie": cookie[who]}
        for key in WORKLIST_SORTS:
            for descending in (True, False):
                query = "/" if key == "value" and descending else f"/?sort={'-' if descending else ''}{key}"
                cases.append(Case(f"worklist, {who}, {key} {'desc' if descending else 'asc'}", "GET", [query], page,
                                  b"</table>"))
    maria_page = {**headers, "Cookie": cookie["maria"]}
    for label, query in (("band=high", "/?band=high"), ("risk rose", "/?rose=on"),
                         ("risk rose + no action", "/?rose=on&no_action=on"), ("page 500", "/?page=500"),
                         ("all stages", "/?stage=all")):
        cases.append(Case(f"worklist, maria, {label}", "GET", [query], maria_page, b"</table>"))
    cases.append(Case("customer page, ana (random customers of her book)", "GET",
                      [f"/customers/{pk}/" for pk, _ in picks], {**headers, "Cookie": cookie["ana"]}, b"</html>"))
    cases.append(Case("/churn top, ana", "POST", ["top"], headers, b"riskiest",
                      body_for=lambda _: _slack_body("top", ana.slack_user_id)))
    cases.append(Case("/churn top all, maria", "POST", ["top all"], headers, b"riskiest",
                      body_for=lambda _: _slack_body("top all", maria.slack_user_id)))
    cases.append(Case("/churn customer, ana (random customers of her book)", "POST", [x for _, x in picks], headers,
                      b"Churn probability", body_for=lambda x: _slack_body(f"customer {x}", ana.slack_user_id)))
    if args.only:
        cases = [c for c in cases if args.only in c.label]

    standin = SlackStandin().start()
    server = _gunicorn(url, standin.api_url)
    try:
        print(f"{Customer.objects.count():,} customers ({book:,} in ana's book), {ChurnScore.objects.count():,} "
              f"scores, {Event.objects.count():,} events; gunicorn --workers 3, {args.clients} concurrent clients, "
              f"{args.requests} timed requests per case after a warm-up round; PostgreSQL "
              f"{connection.pg_version // 10000}; {os.cpu_count()} CPUs; load before {os.getloadavg()[0]:.1f}")
        connection.close()
        # Every worker's first requests: imports, connections, the whole shop's tab counts (kept a minute).
        for case in cases[:1] + [c for c in cases if c.label.startswith("worklist, ana")][:1]:
            _run_case(case, requests=3 * args.clients, clients=args.clients)
        print("| case | p50 ms | p95 ms | max ms | req/s | load (1 min) |\n| --- | ---: | ---: | ---: | ---: | ---: |")
        for case in cases:
            started = time.perf_counter()
            samples = _run_case(case, requests=args.requests, clients=args.clients)
            rate = len(samples) / (time.perf_counter() - started)
            print(f"| {case.label} | {statistics.median(samples):.0f} | {_percentile(samples, 0.95):.0f} | "
                  f"{max(samples):.0f} | {rate:.1f} | {os.getloadavg()[0]:.1f} |", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        standin.stop()


if __name__ == "__main__":
    main()
