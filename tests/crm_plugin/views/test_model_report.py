"""The model report: versions and champion, backtest families side by side, charts, promotion."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from crm_plugin.web import views
from crm_plugin.errors import CrmError
from crm_plugin.models import BacktestRun, ModelVersion
from tests.crm_plugin.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db
URL = reverse("crm-models")


def family(roc_auc: float, *, curves: bool = True) -> dict:
    data = {"roc_auc": roc_auc, "pr_auc": roc_auc - 0.3, "lift_at_10pct": 2.5, "capture_at_10pct": 0.25,
            "brier": 0.2, "ece": 0.03, "train_seconds": 12.0}
    if curves:
        data.update({
            "roc": {"fpr": [0, 0.2, 1], "tpr": [0, 0.6, 1]},
            "pr": {"recall": [0, 0.5, 1], "precision": [1, 0.6, 0.3]},
            "calibration": {"mean_predicted": [0.1, 0.5, 0.9], "fraction_positive": [0.12, 0.48, 0.85], "count": [50, 30, 20]},
            "lift": {"fraction": [0.1, 0.5, 1], "lift": [2.5, 1.5, 1], "capture": [0.25, 0.75, 1]},
            "score_hist": {"edges": [0, 0.25, 0.5, 0.75, 1], "counts": [40, 30, 20, 10]},
        })
    return data


def test_empty_states_tell_what_to_run(ana_client):
    content = ana_client.get(URL).content.decode()
    assert "No model trained yet" in content
    assert "No backtest yet" in content
    assert "There are no events yet: import shop data (<code>python manage.py import_events …</code>)" in content


def _newest_event(at):
    from tests.crm_plugin.factories import EventFactory

    EventFactory(occurred_at=at - timedelta(days=400))
    return EventFactory(occurred_at=at)


@pytest.mark.parametrize("hour", [0, 13, 23])
def test_backtest_hint_names_the_latest_date_that_can_be_backtested(ana_client, settings, hour):
    from datetime import datetime, timezone as tz

    import pandas as pd

    from mlcore.backtest import latest_as_of

    settings.CHURN_HORIZON_DAYS = 90
    newest = datetime(2026, 11, 3, hour, 30, tzinfo=tz.utc)
    _newest_event(newest)
    content = ana_client.get(URL).content.decode()
    # The backtest command's own default: one day of slack for a log that stops mid-day, then 90 days back.
    expected = latest_as_of(pd.DataFrame({"customer_id": [1], "kind": ["order"], "occurred_at": [newest]}), 90)
    assert expected == pd.Timestamp("2026-08-06")
    assert ("The latest date that can be backtested is <strong>6 Aug 2026</strong>: its 90-day window ends with "
            "the newest event (3 Nov 2026). Run <code>python manage.py backtest --as-of 2026-08-06</code>.") in content


def test_backtest_hint_says_when_the_shown_backtest_is_the_latest_possible(ana_client, settings):
    from datetime import datetime, timezone as tz

    settings.CHURN_HORIZON_DAYS = 90
    _newest_event(datetime(2026, 11, 3, 10, tzinfo=tz.utc))
    BacktestRun.objects.create(as_of=datetime(2026, 8, 6, tzinfo=tz.utc), horizon_days=90, n_customers=10,
                               churn_rate=0.3, results={"families": {"logreg": family(0.7)}})
    content = ana_client.get(URL).content.decode()
    assert "Cut-off 6 Aug 2026" in content
    assert "This backtest is at that date: it is up to date." in content
    BacktestRun.objects.update(as_of=datetime(2026, 5, 1, tzinfo=tz.utc))
    assert "Run <code>python manage.py backtest --as-of 2026-08-06</code>." in ana_client.get(URL).content.decode()


def test_backtest_hint_with_less_history_than_one_horizon(ana_client, settings):
    from tests.crm_plugin.factories import EventFactory

    settings.CHURN_HORIZON_DAYS = 90
    EventFactory(occurred_at=timezone.now() - timedelta(days=30))
    EventFactory(occurred_at=timezone.now())
    content = ana_client.get(URL).content.decode()
    assert "less than one 90-day horizon: no date can be backtested yet." in content
    assert "--as-of" not in content


def test_versions_with_metrics_and_champion_marked(ana_client):
    ModelVersionFactory(name="bert-1", family="bert", is_champion=True, metrics={"roc_auc": 0.8123, "pr_auc": 0.55})
    ModelVersionFactory(name="logreg-1", family="logreg", metrics={"roc_auc": 0.7})
    content = ana_client.get(URL).content.decode()
    assert "bert-1</strong> <span class=\"badge champ\">★ champion</span>" in content
    assert "0.812" in content and "0.550" in content
    assert "Promote" not in content  # owners cannot promote


def test_latest_backtest_families_side_by_side_with_all_charts(ana_client):
    BacktestRun.objects.create(as_of=timezone.now(), horizon_days=90, n_customers=1000, churn_rate=0.3,
                               results={"families": {"old": family(0.5)}})
    BacktestRun.objects.create(as_of=timezone.now(), horizon_days=90, n_customers=2000, churn_rate=0.3,
                               results={"families": {"bert": family(0.81), "logreg": family(0.78), "lightgbm": family(0.79)}})
    response = ana_client.get(URL)
    content = response.content.decode()
    assert [f["name"] for f in response.context["bt"]["families"]] == ["bert", "logreg", "lightgbm"]
    assert "2000 customers" in content and ">old<" not in content
    assert '<td class="num best" data-label="ROC AUC">0.810</td>' in content
    for title in ["ROC curve", "Precision-recall curve", "Calibration: predicted vs observed churn",
                  "Capture: share of churners", "Distribution of predicted churn probability"]:
        assert f'aria-label="{title}' in content, title
    assert content.count("<polyline") >= 15
    assert "No data" not in content


def test_backtest_with_missing_curves_still_renders(ana_client):
    broken = family(0.7, curves=False)
    broken["roc"] = {"fpr": [0, "x", 1]}  # tpr missing
    BacktestRun.objects.create(as_of=timezone.now(), horizon_days=90, results={"families": {"logreg": broken, "junk": 3}})
    response = ana_client.get(URL)
    assert response.status_code == 200
    assert response.content.decode().count("No data") == 5


def promote_url(version) -> str:
    return reverse("crm-model-promote", args=[version.pk])


def test_only_an_admin_can_promote(ana_client, client, maria):
    version = ModelVersionFactory()
    assert ana_client.post(promote_url(version), {"confirm": "on"}).status_code == 403
    assert ana_client.get(promote_url(version)).status_code == 403
    client.force_login(maria.user)  # a manager who is not an admin
    assert client.get(promote_url(version)).status_code == 403
    assert client.post(promote_url(version), {"confirm": "on"}).status_code == 403
    assert not ModelVersion.objects.filter(pk=version.pk, is_champion=True).exists()


def test_promote_asks_for_confirmation_first(client, admin_user, monkeypatch):
    ModelVersionFactory(name="old-champ", is_champion=True)
    version = ModelVersionFactory(name="challenger")
    calls = []
    monkeypatch.setattr("crm_plugin.scoring.services.model_version_promote", lambda *, version, by: calls.append((version, by)))
    client.force_login(admin_user)
    report = client.get(URL).content.decode()
    # The report's button opens the confirm page (a link): nothing is promoted by one click.
    assert (f'<a class="button small" href="{promote_url(version)}" aria-label="Promote challenger to champion">'
            "Promote…</a>") in report
    page = client.get(promote_url(version))
    assert page.status_code == 200 and calls == []
    content = page.content.decode()
    assert "Promote challenger to champion?" in content and 'type="checkbox" name="confirm"' in content
    # Posting without the tick promotes nothing and says why, next to the box.
    refused = client.post(promote_url(version))
    assert refused.status_code == 400 and calls == []
    assert 'role="alert">Tick the box to confirm the promotion.</p>' in refused.content.decode()
    response = client.post(promote_url(version), {"confirm": "on"}, follow=True)
    assert calls == [(version, admin_user)]
    assert "challenger is now the champion" in response.content.decode()


def test_promoting_a_weaker_version_says_by_how_much_on_the_champion_rules_metric(client, admin_user):
    from mlcore.compare import CHAMPION_METRIC

    trained = timezone.now()
    ModelVersionFactory(name="champ", is_champion=True, trained_as_of=trained,
                        metrics={CHAMPION_METRIC: 0.62, "pr_auc": 0.40, "roc_auc": 0.81})
    # Better on plain PR-AUC and ROC AUC, worse on what the champion rule compares: the rule's metric decides.
    weaker = ModelVersionFactory(name="weaker", trained_as_of=trained,
                                 metrics={CHAMPION_METRIC: 0.55, "pr_auc": 0.45, "roc_auc": 0.85})
    stronger = ModelVersionFactory(name="stronger", trained_as_of=trained,
                                   metrics={CHAMPION_METRIC: 0.66, "pr_auc": 0.41, "roc_auc": 0.80})
    client.force_login(admin_user)
    content = client.get(promote_url(weaker)).content.decode()
    assert '<div class="warn" role="alert"><p><strong>weaker is weaker than the champion champ on validation.</strong>' in content
    assert ("It scores 0.550 against 0.620 (PR-AUC on active customers, the measure the champion rule compares): "
            "0.070 lower, 11% worse.") in content
    assert "Promote it anyway: I know it is weaker on validation than champ." in content
    assert "validated on different data" not in content  # same training date: a fair comparison
    calm = client.get(promote_url(stronger)).content.decode()
    assert 'class="warn"' not in calm
    assert "stronger scores 0.660 against 0.620 for the champion champ on validation" in calm and "0.040 higher" in calm
    assert "Yes, make stronger the champion." in calm


def test_promotion_check_falls_back_and_says_when_the_data_differ(client, admin_user):
    ModelVersionFactory(name="old", is_champion=True, metrics={"pr_auc": 0.5}, trained_as_of=timezone.now())
    older = ModelVersionFactory(name="older", metrics={"active_pr_auc": 0.9, "pr_auc": 0.3},
                                trained_as_of=timezone.now() - timedelta(days=30))
    unknown = ModelVersionFactory(name="unknown", metrics={})
    client.force_login(admin_user)
    content = client.get(promote_url(older)).content.decode()
    assert "older is weaker than the champion old on validation." in content
    assert "It scores 0.300 against 0.500 (PR-AUC on all customers): 0.200 lower, 40% worse." in content
    assert "The champion rule&#x27;s own figure, PR-AUC on active customers, is missing for one of the two" in content
    assert "validated on different data" in content
    assert "cannot be compared with the champion old" in client.get(promote_url(unknown)).content.decode()
    ModelVersion.objects.update(is_champion=False)
    alone = client.get(promote_url(older)).content.decode()
    assert "There is no champion yet: older will score every customer from the next scoring run." in alone


def test_promotion_errors_are_shown(client, admin_user, monkeypatch):
    version = ModelVersionFactory(name="bad")

    def refuse(*, version, by):
        raise CrmError("bad has files that fail their checksum; it cannot be promoted.")

    monkeypatch.setattr("crm_plugin.scoring.services.model_version_promote", refuse)
    client.force_login(admin_user)
    response = client.post(promote_url(version), {"confirm": "on"}, follow=True)
    assert "fail their checksum" in response.content.decode()


def test_promotion_refuses_a_version_whose_files_are_missing(client, admin_user):
    """Through the real registry service: a version with no artifact files never becomes champion."""
    old = ModelVersionFactory(name="old-champ", is_champion=True)
    version = ModelVersionFactory(name="challenger")
    client.force_login(admin_user)
    response = client.post(promote_url(version), {"confirm": "on"}, follow=True)
    assert response.status_code == 200
    assert ModelVersion.objects.get(is_champion=True) == old
    assert "challenger is now the champion" not in response.content.decode()
    messages = [str(m) for m in response.context["messages"]]
    assert any("challenger" in m and "refused" in m for m in messages), messages
