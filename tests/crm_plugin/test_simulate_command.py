"""`manage.py simulate`: refuses a database with real data, and runs the loop end to end."""
from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from crm_plugin.models import Alert, ChurnScore, Customer, Intervention, ModelVersion
from tests.crm_plugin.factories import CustomerFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # each test simulates weeks of a shop


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_refuses_a_database_with_imported_customers_even_with_replace():
    CustomerFactory(external_id="SHOP-1")
    with pytest.raises(CommandError, match="1 customers that are not from the demo shop; simulate only runs in a separate"):
        call_command("simulate", "--days", "40", "--customers", "60", "--replace")
    assert Customer.objects.count() == 1


def test_a_short_run_goes_through_the_whole_loop_and_reports_true_and_measured_lift(tmp_path, capsys):
    out_json, plot = tmp_path / "sim.json", tmp_path / "sim.svg"
    call_command("simulate", "--days", "40", "--customers", "300", "--seed", "3", "--model", "fast",
                 "--json", str(out_json), "--plot", str(plot))
    printed = capsys.readouterr().out
    assert "retention lift (points of churn prevented): true vs measured" in printed
    assert "model: the simulator's own logistic regression" in printed
    data = json.loads(out_json.read_text())
    assert data["episodes_total"] > 0 and data["lift_overall"]["true"] is not None
    assert len(data["model_quality_by_week"]) == 6  # retrained every 7 days over 40 days
    nba = data["next_best_action"]
    assert nba["learner"] == "pooled" and nba["alerts"] >= nba["alerts_with_a_suggestion"]
    assert [(b["from_day"], b["to_day"]) for b in nba["by_period"]] == [(0, 30), (30, 40)]
    assert sum(b["alerts"] for b in nba["by_period"]) == nba["alerts"] > 0
    # Before the first outcome window closes there is nothing to learn from: no suggestions yet.
    assert nba["by_period"][0]["alerts_with_a_suggestion"] == 0
    assert "next-best action (truly best = the action with the largest true effect" in printed
    assert "tried an action at random (explore share 0%)" in printed
    assert plot.read_text().startswith("<svg")
    # The product's own rows were written: scores, alerts (some held out), simulated actions with outcomes.
    assert ChurnScore.objects.exists() and Alert.objects.filter(kind="high_risk").exists()
    assert Intervention.objects.filter(source="simulation").exclude(outcome="").exists()
    with pytest.raises(CommandError, match="already holds 300 demo customers; pass --replace"):
        call_command("simulate", "--days", "40", "--customers", "300", "--model", "fast")


def test_refuses_a_share_outside_0_to_1():
    with pytest.raises(CommandError, match="explore-share must be a share between 0 and 1, got 1.5"):
        call_command("simulate", "--days", "40", "--customers", "60", "--explore-share", "1.5")
    assert not Customer.objects.exists()


def test_the_product_itself_can_score_and_retrain_inside_the_loop(tmp_path, capsys):
    """--model logreg: the weekly model comes from model_train_all (registry, champion rule) and the daily
    scores from churn_scores_compute, with the product's reasons - not from the simulator's own scorer.
    (`--model tiny-bert` runs the same path with the bert family; a tiny BERT's fits are tested in mlcore.)"""
    out_json = tmp_path / "sim.json"
    call_command("simulate", "--days", "38", "--customers", "150", "--seed", "2", "--model", "logreg",
                 "--json", str(out_json))
    printed = capsys.readouterr().out
    assert "model: the product's logreg family" in printed
    data = json.loads(out_json.read_text())
    weeks = data["model_quality_by_week"]
    assert [w["day"] for w in weeks] == [0, 7, 14, 21, 28, 35] and weeks[0]["promoted"] is True
    assert all(w["valid_roc_auc"] is not None and w["rows"] > 0 for w in weeks)
    versions = ModelVersion.objects.all()
    assert versions.count() == 6 and {v.family for v in versions} == {"logreg"}
    assert versions.filter(is_champion=True).count() == 1
    scores = ChurnScore.objects.select_related("model_version")
    assert scores.exists() and {s.model_version.family for s in scores} == {"logreg"}
    assert all(s.reasons for s in scores.order_by("-probability")[:20])  # the product's reasons, not a stand-in
    assert data["episodes_total"] > 0


def test_refuses_an_unknown_model():
    with pytest.raises(CommandError, match="invalid choice: 'gpt'"):
        call_command("simulate", "--days", "40", "--customers", "60", "--model", "gpt")
