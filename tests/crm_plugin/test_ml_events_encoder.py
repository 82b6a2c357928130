"""The behaviour BERT in the Django loop: masked-event pretraining registered as a version (the train-queue
task), fine-tuning starting from it, bert_events and stacked champions scoring through the chunked runs."""
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from crm_plugin.errors import CrmError
from crm_plugin.models import ChurnScore, ModelVersion, ScoringRun
from crm_plugin.scoring import runs as scoring_runs
from crm_plugin.scoring import services as ml
from crm_plugin.scoring.tasks import train_events_encoder
from tests.mlcore.synth import synth_into_db

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def shop(settings):
    settings.ML_EVENTS_LAYERS, settings.ML_EVENTS_HIDDEN, settings.ML_EVENTS_HEADS = 1, 32, 2
    settings.ML_EVENTS_MAX_EVENTS = 32
    last = synth_into_db(n_customers=120, days=420, seed=5)
    return (last + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def test_pretraining_is_a_registered_version_that_fine_tuning_and_scoring_use(shop):
    version = ModelVersion.objects.get(pk=train_events_encoder.delay(as_of=shop.isoformat(),
                                                                     max_train_minutes=0.3).get())
    assert version.family == "events_encoder" and not version.is_champion
    assert version.metrics["eval_loss_after"] < version.metrics["eval_loss_before"]
    assert {"encoder.safetensors", "encoder.json"} <= set(version.manifest["files"])
    with pytest.raises(CrmError, match="not a churn model"):
        ml.model_version_promote(version=version)
    out = StringIO()
    versions = ml.model_train_all(as_of=shop, families=["bert_events_pretrained"], max_train_minutes=0.1, stdout=out)
    assert f"starts from the pretrained encoder {version.name}" in out.getvalue()
    assert versions[0].params["pretrained_from"] == version.name
    ml.model_version_promote(version=versions[0])
    run = scoring_runs.churn_scores_compute(as_of=shop, chunk_size=50)
    assert run.status == ScoringRun.Status.DONE and ChurnScore.objects.filter(model_version=versions[0]).count() > 50
    assert ChurnScore.objects.exclude(reasons=[]).exists()


def test_pretrain_command_registers_the_encoder(shop):
    out = StringIO()
    call_command("pretrain", "--events", "--as-of", f"{shop:%Y-%m-%d}", "--max-train-minutes", "0.05", stdout=out)
    assert "registered events_encoder-" in out.getvalue() and "held-out masked-event loss" in out.getvalue()


def test_a_stacked_champion_scores_through_the_chunked_runs_with_reasons(shop):
    versions = ml.model_train_all(as_of=shop, families=["stacked"], max_train_minutes=0.2, stdout=StringIO())
    ml.model_version_promote(version=versions[0])
    run = scoring_runs.churn_scores_compute(as_of=shop, chunk_size=50)
    assert run.status == ScoringRun.Status.DONE and run.n_customers > 50
    scores = ChurnScore.objects.filter(model_version=versions[0])
    assert scores.count() == run.n_customers
    # Every score comes with its reasons (SHAP of the numeric features through the trees).
    assert not scores.filter(reasons=[]).exists()
    # The next day scores again from the same artifact (the encoders are read every day, nothing cached).
    again = scoring_runs.churn_scores_compute(as_of=shop + timedelta(days=1), chunk_size=50)
    assert again.status == ScoringRun.Status.DONE and again.n_customers == run.n_customers
