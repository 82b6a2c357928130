"""End to end through a real Celery worker on Redis: train on the `train` queue, score in chunks on `score`."""
import time
from datetime import timedelta

import pytest

from crm_plugin.models import ChurnScore, ModelVersion, ScoringRun
from crm_plugin.scoring.tasks import train_models
from pipeline.tasks import score_all
from tests.mlcore.synth import synth_into_db

pytestmark = [pytest.mark.slow]


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
