"""Score retention: daily for SCORE_KEEP_DAILY_DAYS, then weekly; nothing the charts, lift or training read goes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from crm_plugin.errors import CrmError
from crm_plugin.loop.report import alert_episodes
from crm_plugin.models import Alert, ChurnScore, Customer
from crm_plugin.scoring import selectors as selectors_ml
from crm_plugin.scoring.retention import churn_scores_prune
from crm_plugin.scoring.services import customer_risk_change_refresh
from crm_plugin.scoring.tasks import scores_prune
from crm_plugin.web.selectors import customer_history, score_history_for
from tests.crm_plugin.factories import AccountOwnerFactory, CustomerFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db
# A Wednesday at 05:00 UTC, so weeks (Monday to Sunday) are easy to check by hand.
NOW = datetime(2026, 11, 25, 5, 0, tzinfo=dt_timezone.utc)


def _history(customer, version, days: int, *, newest_days_ago: int = 0) -> list[ChurnScore]:
    """A score every day for `days` days, the newest `newest_days_ago` before NOW; the newest becomes latest."""
    scores = ChurnScore.objects.bulk_create([
        ChurnScore(customer=customer, model_version=version, as_of=NOW - timedelta(days=newest_days_ago + d),
                   probability=0.2 + 0.6 * ((d * 37) % 100) / 100, band="low", reasons=[])
        for d in range(days)
    ])
    latest = min(scores, key=lambda s: NOW - s.as_of)
    Customer.objects.filter(pk=customer.pk).update(latest_score=latest)
    return scores


def _as_ofs(customer) -> list[datetime]:
    return sorted(ChurnScore.objects.filter(customer=customer).values_list("as_of", flat=True))


@pytest.fixture
def version():
    return ModelVersionFactory()


def test_daily_scores_kept_inside_the_window_then_the_last_of_each_week(version):
    customer = CustomerFactory(owner=AccountOwnerFactory())
    _history(customer, version, 200)
    summary = churn_scores_prune(daily_days=90)
    kept = _as_ofs(customer)
    cutoff = NOW - timedelta(days=90)
    daily = [a for a in kept if a >= cutoff]
    assert daily == [NOW - timedelta(days=d) for d in range(90, -1, -1)]  # all 91 days, untouched
    older = [a for a in kept if a < cutoff]
    weeks = [a.isocalendar()[:2] for a in older]
    assert len(weeks) == len(set(weeks)), "one score per week beyond the window"
    for as_of in older:  # and it is the week's last score (or the last before the window)
        later_same_week = as_of + timedelta(days=1)
        assert later_same_week.isocalendar()[:2] != as_of.isocalendar()[:2] or later_same_week >= cutoff
    assert summary.deleted == 200 - len(kept) > 80
    assert summary.examined == 200 - 91


def test_a_second_run_deletes_nothing_and_a_dry_run_nothing_at_all(version):
    customer = CustomerFactory()
    _history(customer, version, 150)
    dry = churn_scores_prune(daily_days=30, dry_run=True)
    assert dry.deleted > 0 and ChurnScore.objects.count() == 150
    assert churn_scores_prune(daily_days=30).deleted == dry.deleted
    assert churn_scores_prune(daily_days=30).deleted == 0


def test_the_window_is_measured_from_each_customers_own_latest_score(version):
    """A customer no longer scored (stopped ordering long ago, or the job was down) keeps the days before their latest."""
    active, stale = CustomerFactory(), CustomerFactory()
    _history(active, version, 100)
    _history(stale, version, 100, newest_days_ago=200)
    churn_scores_prune(daily_days=30)
    stale_kept = _as_ofs(stale)
    latest = NOW - timedelta(days=200)
    assert [a for a in stale_kept if a >= latest - timedelta(days=30)] == [latest - timedelta(days=d) for d in range(30, -1, -1)]
    assert Customer.objects.get(pk=stale.pk).latest_score.as_of == latest
    assert Customer.objects.get(pk=active.pk).latest_score.as_of == NOW


def test_scores_that_alerts_point_at_are_kept_and_the_lift_reads_the_same(version):
    owner = AccountOwnerFactory()
    customers = [CustomerFactory(owner=owner, segment="regular") for _ in range(4)]
    alerted = []
    for i, customer in enumerate(customers):
        scores = _history(customer, version, 200)
        # An alert on a mid-week score (not its week's last) 150 days ago: the lift needs its probability.
        score = next(s for s in scores if s.as_of == NOW - timedelta(days=150 + i))
        alerted.append(score.pk)
        Alert.objects.create(customer=customer, owner=owner, score=score, kind=Alert.Kind.HIGH_RISK,
                             status=Alert.Status.SENT, is_control=i == 0, idempotency_key=f"risk:{customer.pk}:{score.pk}",
                             payload={"probability": score.probability})
    episodes_before = alert_episodes(as_of=NOW, outcome_days=90)
    training_before = selectors_ml.alerts_frame(customer_ids=[c.pk for c in customers])
    summary = churn_scores_prune(daily_days=30)
    assert summary.deleted > 0 and summary.kept_alerted >= 1
    assert set(alerted) <= set(ChurnScore.objects.values_list("pk", flat=True))
    assert list(Alert.objects.filter(kind=Alert.Kind.HIGH_RISK).values_list("score_id", flat=True).order_by("score_id")) == sorted(alerted)
    assert alert_episodes(as_of=NOW, outcome_days=90).equals(episodes_before)
    assert selectors_ml.alerts_frame(customer_ids=[c.pk for c in customers]).equals(training_before)


def test_the_charts_and_the_7_day_change_are_the_same_after_pruning(version):
    customer = CustomerFactory()
    _history(customer, version, 200)
    customer_risk_change_refresh(customer_ids=[customer.pk])
    change_before = Customer.objects.get(pk=customer.pk).risk_change_7d
    sparkline_before = score_history_for([customer.pk])
    chart_before = customer_history(customer=customer)
    churn_scores_prune(daily_days=90)
    customer_risk_change_refresh(customer_ids=[customer.pk])
    assert Customer.objects.get(pk=customer.pk).risk_change_7d == pytest.approx(change_before)
    assert score_history_for([customer.pk]) == sparkline_before
    chart_after = customer_history(customer=customer)
    # Every point drawn is a real score; the 91 days of the daily window are exactly as before, and
    # beyond it the chart reaches further back a point a week instead of stopping.
    window = [p for p in chart_before if p[0] >= NOW - timedelta(days=90)]
    assert [p for p in chart_after if p[0] >= NOW - timedelta(days=90)] == window
    assert set(chart_after) <= set(ChurnScore.objects.filter(customer=customer).values_list("as_of", "probability"))
    assert chart_after[0][0] < chart_before[0][0]
    assert chart_after[-1] == chart_before[-1]


def test_a_window_shorter_than_the_charts_read_is_refused():
    with pytest.raises(CrmError, match="at least 7 days"):
        churn_scores_prune(daily_days=3)
    with pytest.raises(CommandError, match="at least 7 days"):
        call_command("scores_prune", "--keep-daily-days", "2")


def test_the_command_and_the_beat_task(version, capsys):
    customer = CustomerFactory()
    _history(customer, version, 120)
    call_command("scores_prune", "--dry-run")
    assert "would delete" in capsys.readouterr().out and ChurnScore.objects.count() == 120
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "crm.scores_prune")
    assert scores_prune.name == entry["task"]
    assert "deleted" in scores_prune.delay().get()
    assert ChurnScore.objects.count() < 120
    assert Customer.objects.get(pk=customer.pk).latest_score.as_of == NOW


def test_the_daily_lookback_thins_what_crossed_the_window_and_leaves_older_weeks_alone(version):
    customer = CustomerFactory()
    _history(customer, version, 200)
    recent = churn_scores_prune(daily_days=90, lookback_days=14)
    assert recent.examined == 14 and recent.deleted >= 10  # only days 91-104
    older = [a for a in _as_ofs(customer) if a < NOW - timedelta(days=104)]
    assert len(older) == 200 - 105  # untouched beyond the lookback
    rest = churn_scores_prune(daily_days=90)
    assert rest.deleted > 70
    with pytest.raises(CrmError, match="at least a week"):
        churn_scores_prune(lookback_days=3)
