"""Playwright + headless Chromium against pytest-django's live_server.

Skips (fails under CI) when Debian's /usr/bin/chromium is absent. Playwright's sync API
runs an event loop in the test thread, which trips Django's async-safety check on every
ORM call made by the test itself; the test thread is not serving requests, so these tests
(and only these) allow it.
"""
from __future__ import annotations

import math
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import ROOT, service_missing

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "churn-demo-test"


# Module scope: Playwright's loop, and the permission below, end before other test modules
# touch the ORM. Django reads the variable on every ORM call (database flushes included).
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        service_missing("needs Chromium at /usr/bin/chromium (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


class ConsoleLog:
    """Console errors and uncaught page errors seen by one page."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda msg: self.errors.append(f"{msg.type}: {msg.text} @ {page.url}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc} @ {page.url}"))


def _curves(strength: float) -> dict:
    """Plausible backtest curves for a model of the given strength (for the report screenshots)."""
    grid = [i / 20 for i in range(21)]
    tpr = [x ** (1 / (1 + strength)) for x in grid]
    precision = [max(0.31, 0.95 - 0.64 * r ** (1 + 3 * strength)) for r in grid]
    capture = [min(1.0, x ** (1 / (1 + strength * 1.3))) for x in grid]
    centres = [0.05 + 0.1 * i for i in range(10)]
    observed = [min(1, max(0, c + 0.05 * math.sin(6 * c) * (1 - strength))) for c in centres]
    hist = [int(300 * math.exp(-((c - 0.25 - 0.1 * strength) ** 2) / 0.05)) + 5 for c in centres]
    return {
        "roc_auc": 0.7 + 0.15 * strength, "pr_auc": 0.5 + 0.2 * strength, "lift_at_10pct": 2 + strength,
        "capture_at_10pct": 0.2 + 0.1 * strength, "brier": 0.19 - 0.03 * strength, "ece": 0.04 - 0.02 * strength,
        "train_seconds": 3 + 200 * strength,
        "roc": {"fpr": grid, "tpr": tpr}, "pr": {"recall": grid, "precision": precision},
        "calibration": {"mean_predicted": centres, "fraction_positive": observed, "count": hist},
        "lift": {"fraction": grid[1:], "lift": [c / f for c, f in zip(capture[1:], grid[1:])], "capture": capture[1:]},
        "score_hist": {"edges": [i / 10 for i in range(11)], "counts": hist},
    }


@pytest.fixture
def shop(transactional_db):
    """Two owners with scored customers, events, actions, alerts and a backtest — a small demo shop."""
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.utils import timezone

    cache.clear()  # the closed-loop report is cached by a data fingerprint; ids restart with each test

    from crm_plugin.events.importing import customer_last_order_refresh
    from crm_plugin.interventions.services import customer_last_action_refresh
    from crm_plugin.models import AccountOwner, Alert, BacktestRun, ChurnScore, Customer, Event, Intervention, ModelVersion
    from crm_plugin.scoring.services import customer_latest_score_refresh

    User = get_user_model()
    now = timezone.now()

    def owner(username, name, manager=False):
        user = User.objects.create_user(username=username, password=PASSWORD, first_name=name, email=f"{username}@shop.example")
        return AccountOwner.objects.create(user=user, name=name, email=user.email, is_manager=manager)

    ana, ben = owner("ana", "Ana Ortiz"), owner("ben", "Ben Brooks")
    owner("maria", "Maria Meyer", manager=True)
    admin = User.objects.create_superuser("admin", "admin@shop.example", PASSWORD)
    champion = ModelVersion.objects.create(
        name="bert-2026-11-20", family="bert", artifact_path="v/b", is_champion=True, promoted_at=now - timedelta(days=8),
        promoted_by=admin, trained_as_of=now - timedelta(days=9), metrics={k: v for k, v in _curves(0.8).items() if not isinstance(v, dict)},
    )
    ModelVersion.objects.create(name="lightgbm-2026-11-20", family="lightgbm", artifact_path="v/l",
                                metrics={k: v for k, v in _curves(0.7).items() if not isinstance(v, dict)})
    ModelVersion.objects.create(name="logreg-2026-11-20", family="logreg", artifact_path="v/r",
                                metrics={k: v for k, v in _curves(0.5).items() if not isinstance(v, dict)})
    BacktestRun.objects.create(as_of=now - timedelta(days=100), horizon_days=90, n_customers=2000, churn_rate=0.31,
                               results={"families": {"bert": _curves(0.8), "lightgbm": _curves(0.7), "logreg": _curves(0.5)}})

    reasons = [  # the shape mlcore.reasons writes
        {"code": "no_recent_order", "text": "no order for 64 days (usually every 20)", "weight": 0.31,
         "evidence": {"days_since_last_order": 64, "usual_gap_days": 20, "last_order": "2026-09-28"}},
        {"code": "bad_review", "text": "1-star review 12 days ago: 'Arrived broken and nobody answers my emails.'",
         "weight": 0.18, "evidence": {"rating": 1, "days_ago": 12, "quote": "Arrived broken and nobody answers my emails."}},
        {"code": "open_ticket", "text": "open ticket for 10 days: Still waiting for my refund", "weight": 0.11,
         "evidence": {"open_tickets": 1, "open_for_days": 10, "quote": "Still waiting for my refund"}},
    ]
    names = ["Clara Quinn", "Diego Ramos", "Elif Yilmaz", "Femi Adeyemi", "Grace Liu", "Hugo Martin", "Ines Costa",
             "Jonas Berg", "Kira Novak", "Liam Walsh", "Mia Rossi", "Noah Fischer"]
    customers = {}
    for index, name in enumerate(names):
        book = ana if index % 3 != 2 else ben
        customer = Customer.objects.create(
            external_id=f"C{1000 + index}", name=name, email=f"c{index}@mail.example", owner=book,
            segment=["vip", "regular", "new"][index % 3], value=Decimal(500 + 350 * ((index * 7) % 11)),
            first_seen_at=now - timedelta(days=120 + 60 * index),
        )
        base = 0.15 + 0.07 * ((index * 5) % 12)
        latest = None
        for day in range(10, -1, -1):
            probability = min(0.97, max(0.02, base + (0.03 * (10 - day) if index % 2 == 0 else -0.01 * (10 - day))))
            band = "high" if probability >= 0.6 else "medium" if probability >= 0.3 else "low"
            latest = ChurnScore.objects.create(customer=customer, model_version=champion, as_of=now - timedelta(days=day * 3),
                                               probability=probability, band=band, reasons=reasons[: 1 + index % 3])
        # As scoring stages them: Jonas stopped ordering long ago (lapsed, yet scored high), the rest
        # still order: at risk with a medium or high score, active otherwise.
        stage = "lapsed" if name == "Jonas Berg" else "at_risk" if latest.band != "low" else "active"
        Customer.objects.filter(pk=customer.pk).update(latest_score=latest, lifecycle_stage=stage)
        for n in range(8):
            Event.objects.create(customer=customer, kind="order", occurred_at=now - timedelta(days=70 + 25 * n),
                                 amount=Decimal("35.90") + n, quantity=1 + n % 3, source_id=f"o-{index}-{n}",
                                 attributes={"order_id": f"O{index}{n}", "category": ["garden", "kitchen", "books"][n % 3]})
        Event.objects.create(customer=customer, kind="review", occurred_at=now - timedelta(days=12), rating=1,
                             text="Arrived broken and nobody answers my emails.", source_id=f"r-{index}", attributes={"product": "Kettle"})
        Event.objects.create(customer=customer, kind="ticket", occurred_at=now - timedelta(days=10), text="Still waiting for my refund",
                             source_id=f"t-{index}", attributes={"ticket_id": f"T{index}", "status": "open", "closed_at": None})
        Event.objects.create(customer=customer, kind="visit", occurred_at=now - timedelta(days=3), source_id=f"v-{index}",
                             attributes={"pages": 4, "duration_s": 95})
        if index % 4 == 0:
            Alert.objects.create(customer=customer, owner=book, kind="high_risk", status="sent", idempotency_key=f"a-{index}",
                                 sent_at=now - timedelta(days=2))
        if index % 5 == 1:
            Intervention.objects.create(customer=customer, action="email", note="Sent an apology and a 10% coupon.",
                                        created_by=book.user, follow_up_on=timezone.localdate(), created_at=now - timedelta(days=6))
        customers[name] = customer
    # What scoring, the import and logging an action store on each customer for the worklist's sorts.
    ids = [c.pk for c in customers.values()]
    customer_latest_score_refresh(customer_ids=ids)
    customer_last_order_refresh(customer_ids=ids)
    customer_last_action_refresh(customer_ids=ids)
    return {"ana": ana, "ben": ben, "customers": customers}


@pytest.fixture
def loop_shop(shop):
    """The demo shop plus a closed loop whose outcome windows have passed: 50 held out (40% churn),
    50 coupons (20%, outcomes recorded), 40 alerted and untouched, a too-small VIP group, and a
    fresh high-risk customer."""
    from django.conf import settings

    from tests.crm_plugin.views.builders import alerted_group, scored_customer

    ana, ben = shop["ana"], shop["ben"]
    ago = settings.CHURN_OUTCOME_DAYS + 10
    alerted_group(owner=ana, segment="regular", n=50, churned=20, control=True, action=None, prefix="H", alerted_days_ago=ago)
    alerted_group(owner=ana, segment="regular", n=50, churned=10, control=False, action="coupon", recorded=True, prefix="K",
                  alerted_days_ago=ago)
    alerted_group(owner=ben, segment="regular", n=40, churned=18, control=False, action=None, prefix="U", alerted_days_ago=ago)
    alerted_group(owner=ana, segment="vip", n=5, churned=1, control=False, action=None, prefix="VA", alerted_days_ago=ago)
    suggested = scored_customer(owner=ana, name="Nia New", probabilities=[0.82], value="500.00", segment="regular")
    return {**shop, "suggested": suggested}
