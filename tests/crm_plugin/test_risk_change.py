"""Customer.risk_change_7d: written with latest_score by scoring, read by the "risk rose" filter."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F, FloatField, OuterRef, Subquery
from django.utils import timezone

from crm_plugin.models import ChurnScore, Customer
from crm_plugin.web.selectors import RISE_MIN, WorklistFilters, worklist_queryset
from crm_plugin.scoring import services as ml
from crm_plugin.scoring import runs as scoring_runs
from tests.crm_plugin.factories import AccountOwnerFactory, ChurnScoreFactory, CustomerFactory, ModelVersionFactory
from tests.mlcore.synth import synth_into_db

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # trains and scores models on a synthetic shop
NOW = timezone.now().replace(hour=5, minute=0, second=0, microsecond=0)


def _probabilities(as_of) -> dict[int, float]:
    return dict(ChurnScore.objects.filter(as_of=as_of).values_list("customer_id", "probability"))


@pytest.mark.parametrize("order", ["week_ago_first", "today_first"])
def test_two_scoring_runs_seven_days_apart_store_the_change(order):
    last = synth_into_db(n_customers=120, days=420, seed=5)
    today = (last + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    week_ago = today - timedelta(days=7)
    ml.model_train_all(as_of=today, families=["logreg"])
    days = [week_ago, today] if order == "week_ago_first" else [today, week_ago]  # a late re-run of an older day
    for day in days:
        scoring_runs.churn_scores_compute(as_of=day, chunk_size=50)
    before, now = _probabilities(week_ago), _probabilities(today)
    assert len(before) > 50 and set(before) <= set(now)
    stored = dict(Customer.objects.filter(pk__in=now).values_list("pk", "risk_change_7d"))
    for cid, p in now.items():
        if cid in before:
            assert stored[cid] == pytest.approx(p - before[cid], abs=1e-9)
        else:  # first scored today: nothing to compare with
            assert stored[cid] is None
    assert any(v is not None and abs(v) > 1e-6 for v in stored.values())
    assert all(c.latest_score.as_of == today for c in Customer.objects.filter(pk__in=now).select_related("latest_score"))
    # The worklist's ranking columns come with the latest score, whichever day was scored last; the value at
    # risk uses the value the last run wrote.
    for customer in Customer.objects.filter(pk__in=now):
        assert customer.latest_probability == pytest.approx(now[customer.pk], abs=1e-12)
        assert customer.value_at_risk == pytest.approx(now[customer.pk] * float(customer.value))


def _customer(owner, version, points: list[tuple[float, float]]) -> Customer:
    """Scores at (days before NOW, probability); the newest becomes latest_score, as scoring leaves it."""
    customer = CustomerFactory(owner=owner)
    scores = [ChurnScoreFactory(customer=customer, model_version=version, probability=p, band="low",
                                as_of=NOW - timedelta(days=d)) for d, p in points]
    latest = min(zip([d for d, _ in points], scores), key=lambda pair: pair[0])[1]
    Customer.objects.filter(pk=customer.pk).update(latest_score=latest)
    return customer


def test_change_is_against_the_earliest_score_in_the_seven_days_before_the_latest():
    owner, version = AccountOwnerFactory(), ModelVersionFactory()
    week = _customer(owner, version, [(7, 0.2), (3, 0.5), (0, 0.4)])
    gap = _customer(owner, version, [(10, 0.1), (5, 0.3), (0, 0.6)])
    too_old = _customer(owner, version, [(8, 0.1), (0, 0.6)])
    single = _customer(owner, version, [(0, 0.6)])
    unscored = CustomerFactory(owner=owner)
    assert ml.customer_risk_change_refresh(customer_ids=[week.pk, gap.pk, too_old.pk, single.pk, unscored.pk]) == 5
    stored = dict(Customer.objects.values_list("pk", "risk_change_7d"))
    assert stored[week.pk] == pytest.approx(0.2) and stored[gap.pk] == pytest.approx(0.3)
    assert stored[too_old.pk] is None and stored[single.pk] is None and stored[unscored.pk] is None


def _old_risk_rose(qs):
    """The filter as it was before the change was stored: computed from score history per query."""
    baseline = (
        ChurnScore.objects.filter(customer_id=OuterRef("pk"),
                                  as_of__gte=OuterRef("latest_score__as_of") - timedelta(days=7))
        .order_by("as_of").values("probability")[:1]
    )
    return qs.annotate(baseline_probability=Subquery(baseline, output_field=FloatField())).filter(
        latest_score__probability__gte=F("baseline_probability") + RISE_MIN)


def test_the_filter_returns_the_same_customers_as_the_history_query():
    owner, version = AccountOwnerFactory(), ModelVersionFactory()
    shapes = [
        [(2, 0.2), (1, 0.3), (0, 0.6)],             # rising
        [(2, 0.8), (1, 0.5), (0, 0.4)],             # falling
        [(1, 0.5), (0, 0.5)],                       # flat
        [(1, 0.5), (0, 0.505)],                     # below the 1-point noise floor
        [(1, 0.5), (0, 0.51)],                      # exactly one point
        [(9, 0.1)] + [(d, 0.7) for d in range(8, -1, -1)],  # rose long ago, flat this week
        [(7, 0.3), (0, 0.35)],                      # the score exactly 7 days before counts
        [(8, 0.3), (0, 0.9)],                       # 8 days before does not
        [(0, 0.9)],                                 # one score only
        [(30, 0.1), (6, 0.2), (5, 0.9), (0, 0.25)],  # up and down again: still above the window's start
    ]
    customers = [_customer(owner, version, shape) for shape in shapes]
    CustomerFactory(owner=owner)  # never scored
    ml.customer_risk_change_refresh()
    user = AccountOwnerFactory(is_manager=True).user
    new = list(worklist_queryset(user=user, filters=WorklistFilters(stage="", risk_rose=True)).values_list("pk", flat=True))
    old = _old_risk_rose(worklist_queryset(user=user, filters=WorklistFilters(stage=""))).values_list("pk", flat=True)
    assert sorted(new) == sorted(old)
    assert set(new) == {customers[i].pk for i in (0, 4, 6, 9)}
