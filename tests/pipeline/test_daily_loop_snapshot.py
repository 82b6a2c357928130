"""The daily job computes the closed loop after the alert policy, so pages and Slack only read it."""
from __future__ import annotations

import pytest
from django.utils import timezone

from crm_plugin.loop.report import loop_data_fingerprint
from crm_plugin.loop.services import loop_snapshot_contents
from crm_plugin.models import Alert, LoopSnapshot, ScoringRun
from mlcore.uplift import NextBestActionModel
from pipeline.daily import daily_after_scoring
from tests.crm_plugin.factories import AccountOwnerFactory, ChurnScoreFactory, CustomerFactory, EventFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db


def _finished_run_with_one_high_risk_customer(settings) -> ScoringRun:
    """A closed scoring run of today whose one customer (active, owned) crossed into high risk."""
    settings.CONTROL_GROUP_SHARE = 0.0
    as_of = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    version = ModelVersionFactory()
    customer = CustomerFactory(owner=AccountOwnerFactory())
    EventFactory(customer=customer, occurred_at=as_of - timezone.timedelta(days=3))
    ChurnScoreFactory(customer=customer, model_version=version, as_of=as_of, probability=0.9, band="high")
    run = ScoringRun.objects.create(model_version=version, as_of=as_of, status=ScoringRun.Status.DONE)
    return run


def test_after_scoring_stores_the_loop_with_todays_alerts_in_it(settings):
    run = _finished_run_with_one_high_risk_customer(settings)
    result = daily_after_scoring(run_id=run.pk)
    assert Alert.objects.filter(kind="high_risk").count() == 1
    snapshot = LoopSnapshot.objects.get()
    assert snapshot.fingerprint == loop_data_fingerprint()  # taken after the policy's alerts
    assert result["loop_seconds"] == snapshot.seconds
    assert snapshot.report["funnel"][0]["alerts"] == 1


def test_after_scoring_fits_the_next_best_action_model_once_for_the_policy_and_the_loop(settings, monkeypatch):
    run = _finished_run_with_one_high_risk_customer(settings)
    fits = []
    real_fit = NextBestActionModel.fit
    monkeypatch.setattr(NextBestActionModel, "fit", lambda self, frame: fits.append(self) or real_fit(self, frame))
    daily_after_scoring(run_id=run.pk)
    alert = Alert.objects.get(kind="high_risk")
    assert alert.payload["next_best_action"] is not None  # the policy suggested with it
    assert len(fits) == 1  # and the stored loop kept the same fit
    assert loop_snapshot_contents(snapshot=LoopSnapshot.objects.get()).model is not None
