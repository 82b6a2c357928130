"""Registry, promotion, scoring and errors through the Django services (in-process Celery)."""
from datetime import timedelta
from io import StringIO

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import CommandError, call_command
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.models import ChurnScore, Customer, Event, ModelVersion, ScoringRun
from crm_plugin.scoring import services as ml
from crm_plugin.scoring import runs as scoring_runs
from tests.crm_plugin.factories import ModelVersionFactory, UserFactory
from tests.mlcore.synth import synth_into_db

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # trains and scores models on a synthetic shop


@pytest.fixture
def shop():
    last = synth_into_db(n_customers=120, days=420, seed=5)
    return (last + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def _tamper(version: ModelVersion, name: str) -> None:
    storage = storages["models"]
    path = f"{version.artifact_path}/{name}"
    data = storage.open(path).read()
    storage.delete(path)
    storage.save(path, ContentFile(data + b" "))


def test_train_registers_versions_and_promotes_by_the_paired_interval(shop):
    out = StringIO()
    versions = ml.model_train_all(as_of=shop, families=["logreg", "lightgbm"], stdout=out)
    assert [v.family for v in versions] == ["logreg", "lightgbm"]
    champion = ModelVersion.objects.get(is_champion=True)
    # Without a champion lightgbm is the reference; logreg wins only if its whole interval is above it.
    line = next(x for x in out.getvalue().splitlines() if x.strip().startswith("logreg vs lightgbm"))
    low = float(line.split("[")[1].split("..")[0])
    assert champion.family == ("logreg" if low > 0 else "lightgbm")
    assert "active_pr_auc" in champion.metrics
    assert set(champion.manifest["files"]) >= {"calibration.json", "schema.json", "metrics.json"}
    assert f"champion: {champion.name}" in out.getvalue()
    listing = StringIO()
    call_command("models", stdout=listing)
    assert f"* {champion.name}" in listing.getvalue() and f"champion: {champion.name}" in listing.getvalue()


def test_a_new_version_must_beat_the_champion_on_the_same_validation_rows(shop):
    first = ml.model_train_all(as_of=shop, families=["logreg"])[0]
    out = StringIO()
    second = ml.model_train_all(as_of=shop, families=["logreg"], stdout=out)[0]  # same data, same seed: a tie
    assert ModelVersion.objects.get(is_champion=True) == first
    assert f"champion stays {first.name}" in out.getvalue()
    # A champion whose files fail their checksum cannot defend its title.
    _tamper(first, "calibration.json")
    third = ml.model_train_all(as_of=shop, families=["logreg"])[0]
    assert ModelVersion.objects.get(is_champion=True) == third != second


def test_scoring_is_idempotent_and_updates_latest_score_and_value(shop):
    ml.model_train_all(as_of=shop, families=["logreg"])
    run = scoring_runs.churn_scores_compute(as_of=shop, chunk_size=50)
    n = Customer.objects.filter(events__occurred_at__lt=shop).distinct().count()
    assert run.status == ScoringRun.Status.DONE and run.n_customers == n
    assert ChurnScore.objects.count() == n
    scoring_runs.churn_scores_compute(as_of=shop, chunk_size=50)  # a re-run of the same day rewrites, never duplicates
    assert ChurnScore.objects.count() == n
    score = ChurnScore.objects.order_by("-probability").first()
    assert score.band == "high" and score.reasons and score.reasons[0]["weight"] >= score.reasons[-1]["weight"]
    assert {"code", "text", "weight", "evidence"} <= set(score.reasons[0])
    customer = Customer.objects.get(pk=score.customer_id)
    assert customer.latest_score_id == score.pk
    spend = sum(e.amount for e in Event.objects.filter(customer=customer, kind="order",
                                                       occurred_at__gte=shop - timedelta(days=365), occurred_at__lt=shop))
    assert abs(customer.value - spend) <= 1


def test_scoring_refuses_a_tampered_champion_by_file_name_and_promotion_keeps_the_old_one(shop):
    good, other = ml.model_train_all(as_of=shop, families=["lightgbm", "logreg"])
    champion = ModelVersion.objects.get(is_champion=True)
    loser = other if champion == good else good
    _tamper(loser, "schema.json")
    with pytest.raises(CrmError, match=r"'schema.json' fails its checksum"):
        ml.model_version_promote(version=loser, by=UserFactory())
    assert ModelVersion.objects.get(is_champion=True) == champion  # the champion keeps scoring
    scoring_runs.churn_scores_compute(as_of=shop)
    _tamper(champion, "metrics.json")
    with pytest.raises(CrmError, match=r"'metrics.json' fails its checksum"):
        scoring_runs.churn_scores_compute(as_of=shop + timedelta(days=1))
    # The same process scored with this champion a moment ago: a new run still verifies, and the
    # refused run is on record with the reason.
    refused = ScoringRun.objects.latest("started_at")
    assert refused.status == ScoringRun.Status.FAILED and "'metrics.json' fails its checksum" in refused.error
    assert not ChurnScore.objects.filter(as_of=shop + timedelta(days=1)).exists()


def test_manual_promotion_records_who(shop):
    a, b = ml.model_train_all(as_of=shop, families=["logreg", "lightgbm"])
    loser = a if not a.is_champion and ModelVersion.objects.get(pk=a.pk).is_champion is False else b
    user = UserFactory()
    promoted = ml.model_version_promote(version=loser.pk, by=user)
    assert promoted.is_champion and promoted.promoted_by == user
    assert ModelVersion.objects.filter(is_champion=True).count() == 1


def test_clear_errors(shop, settings):
    with pytest.raises(CrmError, match=r"no champion model yet: run `python manage.py train`"):
        scoring_runs.churn_scores_compute(as_of=shop)
    with pytest.raises(CommandError, match="no champion model yet"):
        call_command("score", "--as-of", f"{shop:%Y-%m-%d}", stdout=StringIO())
    with pytest.raises(CrmError, match=r"as_of 2020-01-01 is outside the data: events run from 2025-"):
        ml.model_train_all(as_of=shop.replace(year=2020, month=1, day=1), families=["logreg"])
    with pytest.raises(CrmError, match=r"need at least \d+ days of events"):
        ml.model_train_all(as_of=Event.objects.order_by("occurred_at").first().occurred_at + timedelta(days=30),
                           families=["logreg"])
    settings.BERT_MODEL_PATH = "/nonexistent/bert"
    with pytest.raises(CommandError, match="BERT_MODEL_PATH"):
        call_command("train", "--families", "bert", "--as-of", f"{shop:%Y-%m-%d}", stdout=StringIO())


def test_too_few_churners_says_how_many(db):
    synth_into_db(n_customers=20, days=420, seed=9)
    with pytest.raises(CrmError, match=r"too few labelled customers .* need at least 50 .* have \d+ customers"):
        ml.model_train_all(families=["logreg"], as_of=ml.last_event_day())


def test_unchanged_texts_keep_the_text_reasons_of_their_latest_score():
    from mlcore.scoring import Scored
    from tests.crm_plugin.factories import ChurnScoreFactory, CustomerFactory, ModelVersionFactory

    version, day = ModelVersionFactory(), timezone.now().replace(microsecond=0)
    text_reason = {"code": "recent_review", "text": "review 3 days ago: arrived broken", "weight": 0.4,
                   "evidence": {"date": "2026-01-01", "segment": "2026-01-01 review 1/5: arrived broken"}}
    number_reason = {"code": "no_recent_order", "text": "no order for 64 days", "weight": 0.3, "evidence": {}}

    def customer_with_latest(model_version, reasons):
        customer = CustomerFactory()
        ChurnScoreFactory(customer=customer, model_version=model_version, as_of=day - timedelta(days=9),
                          reasons=[text_reason])  # older history is not read
        latest = ChurnScoreFactory(customer=customer, model_version=model_version, as_of=day - timedelta(days=1),
                                   reasons=reasons)
        Customer.objects.filter(pk=customer.pk).update(latest_score=latest)
        return customer

    had_text = customer_with_latest(version, [text_reason, number_reason])
    had_none = customer_with_latest(version, [number_reason])
    other_model = customer_with_latest(ModelVersionFactory(), [text_reason])
    today = {"code": "fewer_visits", "text": "no site visit for 40 days", "weight": 0.2, "evidence": {}}
    scored = Scored(probabilities=np.array([0.8, 0.8, 0.8]), reasons=[[today], [today], [today]],
                    text_keys=["k1", "k2", "k3"], new_embeddings={})

    ml._carry_text_reasons(version, day, [had_text.pk, had_none.pk, other_model.pk], scored)

    assert scored.reasons[0] == [text_reason, today]  # carried, strongest first; the number reason is today's to give
    assert scored.reasons[1] == [today]
    assert scored.reasons[2] == [today]  # another model's reasons are not this model's to carry


def test_a_long_scoring_run_does_not_keep_every_chunks_sql_with_debug_on(shop, settings):
    from django.db import connection, reset_queries

    ml.model_train_all(as_of=shop, families=["logreg"])
    settings.DEBUG = True  # the local default: Django logs each query with its parameters
    reset_queries()
    run = scoring_runs.churn_scores_compute(as_of=shop, chunk_size=20)
    chunks = -(-run.n_customers // 20)
    assert chunks >= 5
    score_writes = [q for q in connection.queries if q["sql"].startswith('INSERT INTO "crm_plugin_churnscore"')
                    or q["sql"].startswith("INSERT INTO crm_plugin_churnscore")]
    assert len(score_writes) == 1  # the last chunk's; the others were let go as their chunk ended


def test_training_builds_texts_only_for_a_text_family_or_a_text_champion(shop, monkeypatch):
    """Customer texts are most of a snapshot's cost and only the text families read them."""
    asked = []
    real = ml.dataset.training_rows

    def spy(*args, **kwargs):
        asked.append(kwargs.get("texts"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ml.dataset, "training_rows", spy)
    ml.model_train_all(as_of=shop, families=["logreg"])
    ModelVersion.objects.update(is_champion=False)
    ModelVersionFactory(family="bert", is_champion=True)  # a text champion defends on the same rows: it needs them
    out = StringIO()
    ml.model_train_all(as_of=shop, families=["logreg"], stdout=out)
    assert asked == [False, True]
    assert "cannot be evaluated" in out.getvalue()  # (its files do not exist here)
