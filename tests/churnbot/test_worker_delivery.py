"""Delivery through a real Celery worker process on Redis (the `slack` queue), console backend."""
from __future__ import annotations

import time

import pytest

from churnbot.tasks import deliver_alert
from crm_plugin.models import Alert
from tests.churnbot.test_delivery import make_alerts

pytestmark = [pytest.mark.slow]


def test_duplicate_tasks_for_one_alert_on_a_real_worker_deliver_it_once(celery_worker, settings):
    settings.SLACK_BOT_TOKEN = None  # the worker has no token either: console backend
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alerts = make_alerts(3)
    results = [deliver_alert.apply_async(args=[a.pk]) for a in alerts for _ in range(2)]
    outcomes = sorted(r.get(timeout=60) for r in results)
    assert outcomes == ["sent"] * 3 + ["skipped"] * 3
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Alert.objects.filter(kind="high_risk", status="sent").count() < 3:
        time.sleep(0.2)
    rows = Alert.objects.filter(kind="high_risk")
    assert set(rows.values_list("status", "slack_channel")) == {("sent", "console")}
    assert all(a.attempts == 1 for a in rows)
