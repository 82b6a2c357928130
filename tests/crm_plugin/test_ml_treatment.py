"""Treatment as data through the services: the frames the models read, scores as if untreated,
champions saved with the older feature list keep scoring."""
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from crm_plugin.scoring import selectors as selectors_ml
from crm_plugin.models import Alert, ChurnScore, Customer, Intervention, ModelVersion
from crm_plugin.scoring import services as ml
from crm_plugin.scoring import runs as scoring_runs
from mlcore import dataset
from mlcore.snapshot import ACTION_TYPES, ALERT_HELD_OUT_STATUS, ALERT_TOLD_STATUSES, FEATURE_NAMES, rows_for_features
from mlcore.training import train_family
from tests.crm_plugin.factories import ChurnScoreFactory
from tests.mlcore.synth import synth_into_db

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # trains and scores models on a synthetic shop


@pytest.fixture
def shop():
    last = synth_into_db(n_customers=120, days=420, seed=5)
    return (last + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def test_mlcore_knows_every_action_and_alert_status():
    assert set(ACTION_TYPES) == set(Intervention.Action.values)
    assert ALERT_TOLD_STATUSES | {ALERT_HELD_OUT_STATUS, Alert.Status.FAILED} == set(Alert.Status.values)


def test_alerts_frame_dates_an_alert_by_its_score_and_skips_digests(shop):
    customer = Customer.objects.first()
    score = ChurnScoreFactory(customer=customer, as_of=shop - timedelta(days=40))
    Alert.objects.create(customer=customer, score=score, kind=Alert.Kind.HIGH_RISK, status=Alert.Status.HELD_OUT,
                         idempotency_key="a1", is_control=True)
    Alert.objects.create(customer=customer, kind=Alert.Kind.SHARP_RISE, status=Alert.Status.SENT,
                         idempotency_key="a2", created_at=shop - timedelta(days=3))
    Alert.objects.create(kind=Alert.Kind.DIGEST, idempotency_key="d1")
    frame = selectors_ml.alerts_frame().sort_values("alerted_at")
    assert list(frame.columns) == ["customer_id", "alerted_at", "status"]
    assert list(frame["status"]) == ["held_out", "sent"]
    assert list(frame["alerted_at"]) == [shop - timedelta(days=40), shop - timedelta(days=3)]
    Intervention.objects.create(customer=customer, action="coupon", created_at=shop - timedelta(days=2))
    assert list(selectors_ml.interventions_frame()["action"]) == ["coupon"]


def test_a_logged_action_does_not_lower_the_score_and_is_quoted(shop):
    # Past actions in the training rows, so the model puts weight on the treatment columns.
    for i, customer in enumerate(Customer.objects.order_by("pk")[:60]):
        Intervention.objects.create(customer=customer, action=ACTION_TYPES[i % 3],
                                    created_at=shop - timedelta(days=150 + 7 * (i % 20)))
    version = ml.model_train_all(as_of=shop, families=["logreg"])[0]
    coef = dict(zip(FEATURE_NAMES, ml.model_version_load(version=version).model.coef))
    assert abs(coef["treated"]) > 1e-3 and abs(coef["days_since_treatment"]) > 1e-3
    scoring_runs.churn_scores_compute(as_of=shop)
    before = dict(ChurnScore.objects.values_list("customer_id", "probability"))
    customer = Customer.objects.get(pk=max(before, key=before.get))
    Intervention.objects.create(customer=customer, action="call", created_at=shop - timedelta(days=5))
    scoring_runs.churn_scores_compute(as_of=shop)  # the same day again: rewritten with the action now known
    score = ChurnScore.objects.get(customer=customer, as_of=shop)
    assert score.probability == pytest.approx(before[customer.pk], abs=1e-12)
    assert score.reasons[-1]["code"] == "past_action"
    assert score.reasons[-1]["text"] == "call logged 5 days ago; this score is the risk if nothing is done"
    assert not any(r["code"] == "treated" for r in score.reasons)


def test_a_champion_saved_with_the_older_feature_list_keeps_scoring(shop):
    events = selectors_ml.events_frame(before=shop)
    train, valid = dataset.training_rows(events, selectors_ml.customers_frame(), as_of=shop, horizon_days=90)
    # The list before alerts, hold-out and action types became columns.
    old = FEATURE_NAMES[:FEATURE_NAMES.index("tenure_days") + 1] + ("treated", "days_since_treatment")
    trained = train_family("logreg", rows_for_features(train, old), rows_for_features(valid, old))
    version = ml._register(trained, as_of=shop, horizon_days=90)
    ml.model_version_promote(version=version)
    run = scoring_runs.churn_scores_compute(as_of=shop)
    assert run.n_customers == Customer.objects.filter(events__occurred_at__lt=shop).distinct().count()
    # Training again compares the new versions with it on its own columns, then replaces or keeps it.
    ml.model_train_all(as_of=shop, families=["logreg"])
    assert ModelVersion.objects.filter(is_champion=True).count() == 1
    assert np.isfinite(list(ChurnScore.objects.values_list("probability", flat=True))).all()
