"""What production runs, tested in its shape: a real `celery worker` process on Redis and PostgreSQL.

Every test that talks to the real worker lives in this one module, because `make test` spreads
modules over test processes (pytest-xdist, `--dist loadfile`): the worker is started once per test
process and consumes a shared Redis database, so two test processes would each start one and
either worker could take the other's tasks, against the other's test database.
"""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings

from churnbot.tasks import deliver_alert
from config.celery import app, ping
from crm_plugin.models import Alert, ChurnScore, ModelVersion, ScoringRun
from crm_plugin.scoring.tasks import train_models
from demo.shop import demo_shop_generate
from pipeline.tasks import score_all
from tests.churnbot.test_delivery import make_alerts
from tests.mlcore.synth import synth_into_db

pytestmark = [pytest.mark.slow]


def test_real_worker_returns_task_result(celery_worker):
    result = ping.delay("hello from the test")
    assert result.get(timeout=30) == "hello from the test"


def test_train_and_score_through_the_worker(celery_worker, require_postgres, settings):
    last = synth_into_db(n_customers=120, days=420, seed=11)
    as_of = (last + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)

    # The worker has its own settings: it writes and reads artifacts in its MODEL_DIR, not this test's tmp dir.
    version_ids = train_models.apply_async(kwargs={"as_of": as_of.isoformat(), "families": ["logreg"]}).get(timeout=120)
    champion = ModelVersion.objects.get(is_champion=True)
    assert version_ids == [champion.pk] and champion.family == "logreg"

    run_id = score_all.apply_async(kwargs={"as_of": as_of.isoformat(), "chunk_size": 40}).get(timeout=60)
    deadline = time.monotonic() + 120
    while ScoringRun.objects.get(pk=run_id).status == ScoringRun.Status.RUNNING and time.monotonic() < deadline:
        time.sleep(0.5)
    run = ScoringRun.objects.get(pk=run_id)
    assert run.status == ScoringRun.Status.DONE, run.error
    assert run.n_customers == ChurnScore.objects.filter(as_of=as_of, model_version=champion).count() > 100
    assert ChurnScore.objects.exclude(reasons=[]).filter(band="high").exists()


def test_duplicate_tasks_for_one_alert_on_a_real_worker_deliver_it_once(celery_worker, worker_slack, settings):
    settings.CONTROL_GROUP_SHARE = 0.0  # every triggered alert is delivered; the control group has its own tests
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
