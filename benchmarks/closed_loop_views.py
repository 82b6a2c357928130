"""Server time of the closed-loop parts of the CRM pages on PostgreSQL: the model report (profit
threshold), the Impact page (measured lift, funnel, revenue kept, week by week) and the customer page's
next-best action, with a cold and a warm cache.

Builds (once) a dedicated database: customers with a latest score, risk alerts scored 35-120 days
ago of which 10% are held out, actions on ~54% of the delivered alerts, and orders after the alert
for customers who stayed. Then times full Django requests through the test client.

    .venv/bin/python benchmarks/closed_loop_views.py                      # 100,000 customers, 10,000 alerts
    .venv/bin/python benchmarks/closed_loop_views.py --customers 20000 --alerts 2000 --rebuild

"Cold cache" empties this process's cache before each request. Where the code has the daily
job's closed-loop step, it runs once first (timed), as production runs it before pages are read.

The database named by BENCH_DATABASE_URL (default churn_bench_loop) is created if missing and
*rebuilt* with --rebuild or when it is empty: never point it at real data.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.benchdb import ensure_database, setup_django  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/churn_bench_loop"



def _build(n_customers: int, n_alerts: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from crm_plugin.models import AccountOwner, Alert, ChurnScore, Customer, Event, Intervention, ModelVersion

    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("TRUNCATE crm_plugin_intervention, crm_plugin_alert, crm_plugin_event, crm_plugin_churnscore, "
                    "crm_plugin_customer, crm_plugin_accountowner, crm_plugin_modelversion, auth_user CASCADE")
    rng = random.Random(1)
    now = timezone.now().replace(microsecond=0)
    User = get_user_model()
    owners = [AccountOwner.objects.create(name=f"Owner {i:02d}", email=f"o{i}@bench.example",
                                          user=User.objects.create_user(f"owner{i}", password="bench-pass"))
              for i in range(20)]
    AccountOwner.objects.create(name="Manager", email="m@bench.example", is_manager=True,
                                user=User.objects.create_user("manager", password="bench-pass"))
    version = ModelVersion.objects.create(name="bench", family="logreg", artifact_path="bench", is_champion=True)
    segments = ["vip", "regular", "bargain", "new"]
    customers = Customer.objects.bulk_create(
        [Customer(external_id=f"C{i}", name=f"Customer {i}", owner=owners[i % 20], segment=segments[i % 4],
                  value=Decimal(rng.randint(100, 3000))) for i in range(n_customers)], batch_size=5000)
    scores = []
    for c in customers:
        p = rng.random()
        scores.append(ChurnScore(customer=c, model_version=version, as_of=now - timedelta(days=1), probability=p,
                                 band="high" if p >= 0.6 else "medium" if p >= 0.3 else "low"))
    ChurnScore.objects.bulk_create(scores, batch_size=5000)
    for c, s in zip(customers, scores):
        c.latest_score = s
    Customer.objects.bulk_update(customers, ["latest_score"], batch_size=5000)
    alerted = customers[:n_alerts]
    alert_scores = ChurnScore.objects.bulk_create(
        [ChurnScore(customer=c, model_version=version, as_of=now - timedelta(days=rng.randint(35, 120)),
                    probability=0.6 + 0.4 * rng.random(), band="high") for c in alerted], batch_size=5000)
    alerts, events, actions = [], [], []
    for i, (c, s) in enumerate(zip(alerted, alert_scores)):
        control = i % 10 == 0
        alerts.append(Alert(customer=c, owner=c.owner, score=s, kind="high_risk", status="held_out" if control else "sent",
                            is_control=control, idempotency_key=f"risk:{c.pk}:{s.pk}"))
        action = None if control or rng.random() < 0.4 else rng.choice(["call", "coupon", "email"])
        if action:
            actions.append(Intervention(customer=c, action=action, created_at=s.as_of + timedelta(days=1), source="crm"))
        if rng.random() >= (0.3 if action else 0.4):  # stayed: orders every 12 days after the alert
            events += [Event(customer=c, kind="order", occurred_at=s.as_of + timedelta(days=5 + 12 * k),
                             amount=Decimal(30), source_id=f"o{c.pk}-{k}") for k in range(6)]
    Alert.objects.bulk_create(alerts, batch_size=5000)
    Event.objects.bulk_create(events, batch_size=5000)
    Intervention.objects.bulk_create(actions, batch_size=5000)
    print(f"built {n_customers:,} customers, {len(alerts):,} alerts, {len(actions):,} actions, {len(events):,} orders "
          f"in {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=5, help="timed requests per case")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.alerts <= args.customers:
        parser.error("need 1 <= --alerts <= --customers")
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    ensure_database(url)
    setup_django(url, migrate=True)

    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client

    from crm_plugin.models import Customer
    try:
        from crm_plugin.loop.report import loop_data_fingerprint
    except ImportError:  # before it moved next to the report
        from crm_plugin.loop.selectors import loop_data_fingerprint

    if args.rebuild or not Customer.objects.exists():
        _build(args.customers, args.alerts)
    client = Client()
    client.force_login(get_user_model().objects.get(username="manager"))
    high = list(Customer.objects.filter(latest_score__band="high").values_list("pk", flat=True)[: args.requests])
    low = list(Customer.objects.filter(latest_score__band="low").values_list("pk", flat=True)[: args.requests])

    def case(label: str, path_for, *, cold: bool) -> None:
        times = []
        for i in range(args.requests):
            if cold:
                cache.clear()
            started = time.perf_counter()
            response = client.get(path_for(i))
            times.append(1000 * (time.perf_counter() - started))
            assert response.status_code == 200, (label, response.status_code)
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        print(f"{label:<44} median {statistics.median(times):7.0f} ms   p95 {p95:7.0f} ms   max {max(times):7.0f} ms")

    print(f"load average before: {os.getloadavg()[0]:.1f}")
    try:  # the daily job computes and stores the loop after the alert policy (where the code has that step)
        from crm_plugin.loop.services import closed_loop_refresh
    except ImportError:
        closed_loop_refresh = None
    if closed_loop_refresh is not None:
        started = time.perf_counter()
        snapshot = closed_loop_refresh()
        print(f"{'daily job: closed_loop_refresh':<44} {1000 * (time.perf_counter() - started):7.0f} ms "
              f"(stored {len(bytes(snapshot.model)):,} bytes of model)")
    case("/models/ (manager), cold cache", lambda i: "/models/", cold=True)
    case("/models/ (manager), warm cache", lambda i: "/models/", cold=False)
    from django.urls import NoReverseMatch, reverse

    try:
        impact = reverse("crm-impact")
    except NoReverseMatch:  # a checkout from before the Impact page
        impact = None
    if impact:
        case("/impact/ (manager), cold cache", lambda i: impact, cold=True)
        case("/impact/ (manager), warm cache", lambda i: impact, cold=False)
    case("customer page, high risk, cold cache", lambda i: f"/customers/{high[i % len(high)]}/", cold=True)
    case("customer page, high risk, warm cache", lambda i: f"/customers/{high[i % len(high)]}/", cold=False)
    case("customer page, low risk (no suggestion)", lambda i: f"/customers/{low[i % len(low)]}/", cold=False)
    times = []
    for _ in range(args.requests):
        started = time.perf_counter()
        loop_data_fingerprint()
        times.append(1000 * (time.perf_counter() - started))
    print(f"{'loop_data_fingerprint (2 queries)':<44} median {statistics.median(times):7.0f} ms")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
