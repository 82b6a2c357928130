"""The model report: versions and champion, backtest families side by side, charts, promotion."""
from __future__ import annotations

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
    assert "No backtest yet — run <code>python manage.py backtest --as-of YYYY-MM-DD</code>" in content


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


def test_only_an_admin_can_promote(ana_client):
    version = ModelVersionFactory()
    assert ana_client.post(reverse("crm-model-promote", args=[version.pk])).status_code == 403
    assert ana_client.get(reverse("crm-model-promote", args=[version.pk])).status_code in (403, 405)


def test_admin_promote_calls_the_service_and_says_so(client, admin_user, monkeypatch):
    ModelVersionFactory(name="old-champ", is_champion=True)
    version = ModelVersionFactory(name="challenger")
    calls = []
    monkeypatch.setattr("crm_plugin.scoring.services.model_version_promote", lambda *, version, by: calls.append((version, by)))
    client.force_login(admin_user)
    assert 'aria-label="Promote challenger to champion"' in client.get(URL).content.decode()
    response = client.post(reverse("crm-model-promote", args=[version.pk]), follow=True)
    assert calls == [(version, admin_user)]
    assert "challenger is now the champion" in response.content.decode()


def test_promotion_errors_are_shown(client, admin_user, monkeypatch):
    version = ModelVersionFactory(name="bad")

    def refuse(*, version, by):
        raise CrmError("bad has files that fail their checksum; it cannot be promoted.")

    monkeypatch.setattr("crm_plugin.scoring.services.model_version_promote", refuse)
    client.force_login(admin_user)
    response = client.post(reverse("crm-model-promote", args=[version.pk]), follow=True)
    assert "fail their checksum" in response.content.decode()


def test_promotion_refuses_a_version_whose_files_are_missing(client, admin_user):
    """Through the real registry service: a version with no artifact files never becomes champion."""
    old = ModelVersionFactory(name="old-champ", is_champion=True)
    version = ModelVersionFactory(name="challenger")
    client.force_login(admin_user)
    response = client.post(reverse("crm-model-promote", args=[version.pk]), follow=True)
    assert response.status_code == 200
    assert ModelVersion.objects.get(is_champion=True) == old
    assert "challenger is now the champion" not in response.content.decode()
    messages = [str(m) for m in response.context["messages"]]
    assert any("challenger" in m and "refused" in m for m in messages), messages
