"""The daily job in-process (the embedded default) and the guard rails around a scoring run."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from urllib.parse import urlparse

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from conftest import ROOT
from crm_plugin.errors import CrmError
from crm_plugin.models import Alert, ChurnScore, Customer, ScoringRun
from crm_plugin.scoring import services as ml
from crm_plugin.scoring import runs as scoring_runs
from demo.shop import demo_shop_generate
from tests.crm_plugin.factories import ModelVersionFactory

pytestmark = pytest.mark.slow  # generates a shop, trains and scores


@pytest.fixture
def shop(db):
    demo_shop_generate(customers=200, days=365, seed=5)
    return ml.last_event_day()


def test_run_daily_trains_scores_alerts_and_delivers_in_one_command(shop, django_capture_on_commit_callbacks):
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):  # delivery is enqueued after commit
        call_command("run_daily", "--families", "logreg", stdout=out)
    printed = out.getvalue()
    assert "no champion yet: training logreg" in printed
    assert f"scored {ChurnScore.objects.filter(as_of=shop).count()} customers" in printed
    assert "alert policy: alerts as of" in printed and "alerts to deliver:" in printed
    assert "at risk: the 10 active customers with the most value at risk" in printed
    # The list the worklist opens on: active customers at risk, most value at risk first; no lapsed one.
    listed = [line.split("(")[-1].rstrip(")") for line in printed.split("with the most value at risk")[1].splitlines()
              if " at risk  " in line]
    customers = {c.external_id: c for c in Customer.objects.filter(external_id__in=listed)}
    assert len(listed) == 10 and {c.lifecycle_stage for c in customers.values()} == {Customer.Stage.AT_RISK}
    values = [customers[x].value_at_risk for x in listed]
    assert values == sorted(values, reverse=True)
    alerts = Alert.objects.filter(kind__in=["high_risk", "digest"], is_control=False)
    assert alerts.exists() and set(alerts.values_list("status", flat=True)) <= {"sent", "digested"}
    assert ScoringRun.objects.get().status == ScoringRun.Status.DONE


def test_a_run_whose_process_died_is_marked_failed_with_why_and_the_next_run_goes_ahead(shop):
    call_command("run_daily", "--families", "logreg", stdout=StringIO())
    champion = ml.champion_get()
    dead = ScoringRun.objects.create(model_version=champion, as_of=shop, status=ScoringRun.Status.RUNNING,
                                     lease_expires_at=timezone.now() - timedelta(seconds=1))
    run = scoring_runs.churn_scores_compute(as_of=shop + timedelta(days=1))
    dead.refresh_from_db()
    assert dead.status == ScoringRun.Status.FAILED and dead.finished_at is not None
    assert "no progress since" in dead.error and "its worker or process died" in dead.error
    assert run.status == ScoringRun.Status.DONE and run.lease_expires_at is None


def test_a_run_still_making_progress_is_not_doubled(shop):
    call_command("run_daily", "--families", "logreg", stdout=StringIO())
    live = ScoringRun.objects.create(model_version=ml.champion_get(), as_of=shop, status=ScoringRun.Status.RUNNING,
                                     lease_expires_at=timezone.now() + timedelta(minutes=5))
    with pytest.raises(CrmError, match=rf"scoring run #{live.pk} .* is still running"):
        scoring_runs.churn_scores_compute(as_of=shop + timedelta(days=1))
    assert ScoringRun.objects.filter(status=ScoringRun.Status.RUNNING).count() == 1


def test_each_finished_chunk_renews_the_lease(shop, settings):
    call_command("run_daily", "--families", "logreg", stdout=StringIO())
    soon = timezone.now() + timedelta(seconds=5)
    run = ScoringRun.objects.create(model_version=ml.champion_get(), as_of=shop, lease_expires_at=soon)
    ids = list(ChurnScore.objects.values_list("customer_id", flat=True)[:20])
    ml.churn_scores_compute_chunk(run_id=run.pk, customer_ids=ids)
    run.refresh_from_db()
    assert run.lease_expires_at > soon + timedelta(seconds=settings.SCORING_LEASE_SECONDS - 60)


def test_a_failing_chunk_fails_its_run_with_the_reason(shop, monkeypatch):
    call_command("run_daily", "--families", "logreg", stdout=StringIO())

    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("crm_plugin.scoring.tasks.churn_scores_compute_chunk", broken)
    with pytest.raises(CrmError, match="disk full"):
        scoring_runs.churn_scores_compute(as_of=shop + timedelta(days=1), chunk_size=50)
    run = ScoringRun.objects.order_by("-pk").first()
    assert run.status == ScoringRun.Status.FAILED and "a chunk of 50 customers failed: disk full" in run.error


# --- run_daily with a broker, as an operator starts it (a separate process) ----------------------

def _run_daily_process(broker_url: str, tmp_path) -> subprocess.CompletedProcess:
    db_url = urlparse(os.environ["DATABASE_URL"])._replace(path=f"/{connection.settings_dict['NAME']}").geturl()
    env = {**os.environ, "DATABASE_URL": db_url, "CELERY_BROKER_URL": broker_url, "CELERY_RESULT_BACKEND": broker_url,
           "CELERY_WORKER_WAIT_SECONDS": "2", "MODEL_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "manage.py", "run_daily"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def scored_shop(transactional_db, require_postgres):
    demo_shop_generate(customers=30, days=120, seed=2)
    return ModelVersionFactory(is_champion=True)


def test_run_daily_with_no_score_worker_stops_and_names_the_queue(scored_shop, redis_url, tmp_path):
    idle_broker = urlparse(redis_url)._replace(path="/8").geturl()  # a Redis database no worker listens on
    done = _run_daily_process(idle_broker, tmp_path)
    assert done.returncode == 1
    assert "no Celery worker consumes the `default`, `score` queues" in done.stderr
    assert "celery -A config worker -Q default,score" in done.stderr and "Traceback" not in done.stderr
    assert not ScoringRun.objects.exists()  # nothing was opened that would then sit `running`


def test_run_daily_with_the_broker_down_says_so_plainly(scored_shop, tmp_path):
    done = _run_daily_process("redis://127.0.0.1:1/0", tmp_path)
    assert done.returncode == 1
    assert "cannot reach the Celery broker at redis://127.0.0.1:1/0" in done.stderr
    assert "result store" not in done.stderr and "must be restarted" not in done.stderr
    assert "Traceback" not in done.stderr
