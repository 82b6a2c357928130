"""Message embeddings through the services: one cache for training and scoring, nothing without text or when off."""
from datetime import timedelta
from io import StringIO

import pytest

from crm_plugin.models import Customer, Event, MessageEmbedding, ModelVersion, ScoringRun
from crm_plugin.scoring import messages as ml_messages
from crm_plugin.scoring import runs as scoring_runs
from crm_plugin.scoring import services as ml
from mlcore.messages import ANCHORS, MESSAGE_FEATURE_NAMES
from tests.mlcore.synth import synth_into_db

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # trains and scores; loads the packaged MiniLM


def _day_after(last):
    return (last + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture
def fresh_encoder(monkeypatch):
    """This test's own process encoder, so its counters and its loaded state are this test's alone."""
    monkeypatch.setattr(ml_messages, "_ENCODERS", {})
    return ml_messages.message_encoder


def test_training_and_daily_scoring_encode_each_message_once(fresh_encoder):
    as_of = _day_after(synth_into_db(n_customers=120, days=420, seed=5))
    texts = set(Event.objects.exclude(text="").values_list("text", flat=True))
    out = StringIO()
    version = ml.model_train_all(as_of=as_of, families=["logreg"], stdout=out)[0]
    encoder = fresh_encoder()
    # Every distinct message and the anchor sentences, once each, in the cache the scoring reads.
    n_anchors = sum(len(v) for v in ANCHORS.values())
    assert encoder.n_texts == len(texts) + n_anchors == MessageEmbedding.objects.count()
    assert f"message embeddings: {Event.objects.exclude(text='').count()} messages ({len(texts) + n_anchors} newly " \
           f"encoded), {len(MESSAGE_FEATURE_NAMES)} columns" in out.getvalue()
    model = ml.model_version_load(version=version)
    assert model.feature_names[-len(MESSAGE_FEATURE_NAMES):] == MESSAGE_FEATURE_NAMES  # in the saved schema
    assert "messages.json" in version.manifest["files"]

    calls = encoder.n_calls
    run = scoring_runs.churn_scores_compute(as_of=as_of, chunk_size=50)
    assert run.status == ScoringRun.Status.DONE and encoder.n_calls == calls  # every vector came from the cache

    # The next day one customer writes something new: only that message is encoded.
    customer = Customer.objects.filter(events__isnull=False).first()
    Event.objects.create(customer=customer, kind="review", occurred_at=as_of + timedelta(hours=3), rating=1,
                         text="Third late parcel, I am done with this shop.", source_id="new-review")
    texts_before = encoder.n_texts
    scoring_runs.churn_scores_compute(as_of=as_of + timedelta(days=1), chunk_size=50)
    assert encoder.n_texts == texts_before + 1 and MessageEmbedding.objects.count() == len(texts) + n_anchors + 1

    # Retraining judges the champion with its own saved featurizer on the same rows: a tie keeps it.
    again = StringIO()
    ml.model_train_all(as_of=as_of, families=["logreg"], stdout=again)
    assert f"champion stays {version.name}" in again.getvalue()
    assert ModelVersion.objects.get(is_champion=True) == version


def test_without_text_or_with_the_setting_off_nothing_is_encoded(fresh_encoder, settings):
    as_of = _day_after(synth_into_db(n_customers=120, days=420, seed=6, transactions_only=True))
    version = ml.model_train_all(as_of=as_of, families=["logreg"])[0]
    model = ml.model_version_load(version=version)
    assert model.messages is None and not set(MESSAGE_FEATURE_NAMES) & set(model.feature_names)
    assert "messages.json" not in version.manifest["files"]

    # Off: a shop with text trains without the columns, and never loads the encoder either.
    settings.ML_MESSAGE_EMBEDDINGS = False
    Event.objects.create(customer=Customer.objects.first(), kind="ticket", occurred_at=as_of - timedelta(days=3),
                         text="Where is my refund?", attributes={"status": "open"}, source_id="t-off")
    off = ml.model_train_all(as_of=as_of, families=["logreg"])[0]
    assert not set(MESSAGE_FEATURE_NAMES) & set(ml.model_version_load(version=off).feature_names)

    # On, with no usable encoder: the baselines still train, and the output says why the columns are missing.
    settings.ML_MESSAGE_EMBEDDINGS, path = True, settings.BERT_MODEL_PATH
    settings.BERT_MODEL_PATH = "/nonexistent/minilm"
    out = StringIO()
    skipped = ml.model_train_all(as_of=as_of, families=["logreg"], stdout=out)[0]
    assert "message embeddings skipped: message embeddings need a local BERT checkpoint: " \
           "BERT_MODEL_PATH='/nonexistent/minilm' has no config.json" in out.getvalue()
    assert not set(MESSAGE_FEATURE_NAMES) & set(ml.model_version_load(version=skipped).feature_names)

    # On again: a champion trained without message features scores as it always did.
    settings.BERT_MODEL_PATH = path
    assert scoring_runs.churn_scores_compute(as_of=as_of).status == ScoringRun.Status.DONE
    assert not fresh_encoder().loaded and MessageEmbedding.objects.count() == 0
