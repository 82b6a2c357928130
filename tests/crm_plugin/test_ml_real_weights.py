"""Train, register and score end to end through the real packaged MiniLM weights (settings.BERT_MODEL_PATH)."""
from datetime import timedelta
from pathlib import Path

import pytest

from crm_plugin.models import ChurnScore, EncoderCacheEntry, Event, ModelVersion
from crm_plugin.scoring import services as ml
from tests.mlcore.synth import synth_into_db

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_bert_with_real_weights_scores_with_reasons_and_reuses_its_cache(settings):
    if not settings.BERT_MODEL_PATH or not Path(settings.BERT_MODEL_PATH, "config.json").is_file():
        pytest.fail(f"the packaged MiniLM weights are missing at BERT_MODEL_PATH={settings.BERT_MODEL_PATH!r}")
    last = synth_into_db(n_customers=120, days=420, seed=21)
    as_of = (last + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    [version] = ml.model_train_all(as_of=as_of, families=["bert"], max_train_minutes=0.2)
    assert ModelVersion.objects.get(is_champion=True) == version
    assert any(name.endswith(".safetensors") for name in version.manifest["files"])

    run = ml.churn_scores_compute(as_of=as_of)
    assert run.n_encoded == run.n_customers == ChurnScore.objects.filter(as_of=as_of).count() > 100
    assert EncoderCacheEntry.objects.filter(model_version=version).count() == run.n_customers
    assert all(s.reasons for s in ChurnScore.objects.filter(as_of=as_of))  # every score is explained

    # The next day one customer orders; only that customer's text goes through the encoder again.
    event = Event.objects.filter(occurred_at__lt=as_of).first()
    Event.objects.create(customer_id=event.customer_id, kind="order", occurred_at=as_of + timedelta(hours=3),
                         amount=30, quantity=1, attributes={"category": "bags"}, source_id="real-weights-new")
    run2 = ml.churn_scores_compute(as_of=as_of + timedelta(days=1))
    assert (run2.n_customers, run2.n_encoded) == (run.n_customers, 1)
