"""Production's loop: beat's periodic tasks, fired by name through a real worker, end in Slack DMs."""
from __future__ import annotations

import time

import pytest
from django.conf import settings

from config.celery import app
from crm_plugin.models import Alert, ModelVersion, ScoringRun
from demo.shop import demo_shop_generate

pytestmark = [pytest.mark.slow]


def _wait_for(condition, *, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"waited {seconds:.0f} s for {what}")


def test_the_beat_schedule_alone_scores_alerts_and_posts_to_slack(celery_worker, require_postgres, worker_slack):
    demo_shop_generate(customers=200, days=365, seed=5)
    names = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    registered = {n for tasks in (app.control.inspect(timeout=5).registered() or {}).values() for n in tasks}
    assert set(names) <= registered, f"beat names tasks the worker does not know: {set(names) - registered}"
    assert "pipeline.daily_run" in names

    # As beat sends them: weekly training first (this shop has no champion yet), then the rest.
    for name in sorted(names, key=lambda n: n != "mlcore.train_weekly"):
        app.send_task(name).get(timeout=180)

    champion = ModelVersion.objects.get(is_champion=True)
    run = _wait_for(lambda: ScoringRun.objects.filter(model_version=champion, status=ScoringRun.Status.DONE).first(),
                    seconds=120, what="the daily scoring run to finish")
    assert not ScoringRun.objects.filter(status=ScoringRun.Status.FAILED).exists()
    # The steps after scoring ran in the worker, chained after the run closed: alerts exist and are sent.
    alerts = Alert.objects.filter(kind__in=["high_risk", "digest"], is_control=False).exclude(status="digested")
    _wait_for(lambda: alerts.exists() and not alerts.exclude(status="sent").exists(),
              seconds=60, what="every alert to be delivered")
    sent = list(alerts)
    assert all(a.slack_ts and a.slack_channel.startswith("D") for a in sent)
    posts = worker_slack.calls_to("chat.postMessage")
    keys = {p.arg("metadata")["event_payload"]["alert_key"] if isinstance(p.arg("metadata"), dict) else None
            for p in posts}
    assert {a.idempotency_key for a in sent} <= keys
    assert run.n_customers > 150
