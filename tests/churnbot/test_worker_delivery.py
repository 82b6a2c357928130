"""Delivery through a real Celery worker process on Redis (the `slack` queue) to the Slack stand-in."""
from __future__ import annotations

import time

import pytest

from churnbot.tasks import deliver_alert
from crm_plugin.models import Alert
from tests.churnbot.test_delivery import make_alerts

pytestmark = [pytest.mark.slow]


def test_duplicate_tasks_for_one_alert_on_a_real_worker_deliver_it_once(celery_worker, worker_slack):
    alerts = make_alerts(3)
    results = [deliver_alert.apply_async(args=[a.pk]) for a in alerts for _ in range(2)]
    outcomes = sorted(r.get(timeout=60) for r in results)
    assert outcomes == ["sent"] * 3 + ["skipped"] * 3
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Alert.objects.filter(kind="high_risk", status="sent").count() < 3:
        time.sleep(0.2)
    rows = Alert.objects.filter(kind="high_risk")
    assert set(rows.values_list("status", "slack_channel")) == {("sent", "DANA")}
    assert all(a.attempts == 1 for a in rows)
    posted = worker_slack.posted("DANA")
    assert sorted(m["metadata"]["event_payload"]["alert_key"] for m in posted) == sorted(a.idempotency_key for a in alerts)
