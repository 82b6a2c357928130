"""Backtest: trains only on the past, publishes its JSON, stores a BacktestRun with curves."""
import json

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from mlcore.backtest import backtest_json, backtest_table, run_backtest
from mlcore.errors import MlError, NotEnoughData
from tests.mlcore.synth import synth_frames, synth_into_db

pytestmark = pytest.mark.slow  # backtests train every family

AS_OF = pd.Timestamp("2025-11-01", tz="UTC")
METRICS = {"roc_auc", "pr_auc", "lift_at_10pct", "capture_at_10pct", "brier", "ece", "train_seconds"}


@pytest.fixture(scope="module")
def shop():
    return synth_frames(200, days=420, seed=2)


def test_results_have_the_published_keys_and_curves(shop):
    results = run_backtest(*shop, as_of=AS_OF, horizon_days=60, families=["logreg", "lightgbm"])
    data = backtest_json(results)
    assert set(data) == {"as_of", "horizon_days", "n_customers", "churn_rate", "families"}
    assert data["as_of"] == "2025-11-01" and data["horizon_days"] == 60 and data["n_customers"] > 100
    assert 0 < data["churn_rate"] < 1
    for name in ("logreg", "lightgbm"):
        assert set(data["families"][name]) == METRICS
        assert data["families"][name]["roc_auc"] > 0.75
        stored = results["families"][name]
        assert {"roc", "pr", "calibration", "lift", "score_hist"} <= set(stored)
        assert all(len(v) <= 101 for curve in ("roc", "pr") for v in stored[curve].values())
    assert 0 < results["n_active"] < data["n_customers"]
    assert set(results["families"]["logreg"]["active"]) == METRICS - {"train_seconds"}
    json.dumps(results)  # the BacktestRun row stores it as JSON
    assert "logreg" in backtest_table(results) and "churn rate" in backtest_table(results)


def test_training_never_sees_events_from_as_of_on(shop):
    """Validation PR-AUC (a function of the trained model only) is identical without any future events."""
    events, customers = shop
    full = run_backtest(events, customers, as_of=AS_OF, horizon_days=60, families=["logreg", "lightgbm"])
    # Future events made different (but the test window itself unchanged): more orders after the window.
    later = events[events["kind"] == "order"].copy()
    later["occurred_at"] = AS_OF + pd.Timedelta(days=61)
    changed = run_backtest(pd.concat([events, later], ignore_index=True), customers, as_of=AS_OF, horizon_days=60,
                           families=["logreg", "lightgbm"])
    for name in ("logreg", "lightgbm"):
        assert changed["families"][name]["valid_pr_auc"] == full["families"][name]["valid_pr_auc"]
        assert changed["families"][name]["pr_auc"] == full["families"][name]["pr_auc"]


def test_transactions_only_shop_backtests():
    results = run_backtest(*synth_frames(200, days=420, seed=4, transactions_only=True), as_of=AS_OF,
                           horizon_days=60, families=["logreg"])
    assert results["families"]["logreg"]["roc_auc"] > 0.7


def test_rolling_dates_give_means_and_paired_intervals_against_lightgbm(shop):
    from mlcore.backtest import comparison_table, run_backtests

    summary = run_backtests(*shop, as_of=AS_OF, horizon_days=60, n_dates=3, step_days=30,
                            families=["logreg", "lightgbm"], n_boot=200)
    assert [r["as_of"] for r in summary["dates"]] == ["2025-09-02", "2025-10-02", "2025-11-01"]
    assert all("_scores" not in r for r in summary["dates"])  # the arrays stay in memory
    json.dumps(summary)
    comp = summary["comparison"]
    assert comp["reference"] == "lightgbm" and comp["n_dates"] == 3
    for side in ("active", "all"):
        logreg = comp["families"]["logreg"][side]
        per_date = [r["families"]["logreg"]["active" if side == "active" else "pr_auc"] for r in summary["dates"]]
        per_date = [d["pr_auc"] if isinstance(d, dict) else d for d in per_date]
        assert logreg["pr_auc"] == pytest.approx(np.mean(per_date), abs=1e-6)
        d = logreg["vs_reference"]
        assert d["low"] <= d["diff"] <= d["high"]
        assert d["diff"] == pytest.approx(logreg["pr_auc"] - comp["families"]["lightgbm"][side]["pr_auc"], abs=1e-5)
        assert "vs_reference" not in comp["families"]["lightgbm"][side]
    assert "logreg" in comparison_table(summary)


def test_as_of_whose_window_is_not_observed_yet_names_the_data_range(shop):
    with pytest.raises(NotEnoughData, match=r"outside the data .* events run from 2025-0\d-\d\d to 2026-.*as_of at most"):
        run_backtest(*shop, as_of=pd.Timestamp("2026-02-10", tz="UTC"), horizon_days=60, families=["logreg"])


def test_unknown_family_is_refused_before_any_training(shop):
    with pytest.raises(MlError, match="unknown model families gpt"):
        run_backtest(*shop, as_of=AS_OF, horizon_days=60, families=["logreg", "gpt"])


@pytest.mark.django_db
def test_command_stores_a_backtest_run_and_writes_the_json(tmp_path, capsys):
    from crm_plugin.models import BacktestRun, ModelVersion

    synth_into_db(160, days=420, seed=6)
    out = tmp_path / "bt.json"
    call_command("backtest", "--as-of", "2025-11-01", "--horizon-days", "60", "--families", "logreg,lightgbm",
                 "--dates", "2", "--bootstrap", "100", "--json", str(out), "--no-progress")
    printed = capsys.readouterr().out
    assert "lightgbm" in printed and "ROC-AUC" in printed
    assert "2 backtest dates (2025-10-02, 2025-11-01)" in printed and "difference to lightgbm" in printed
    assert printed.index("active customers") < printed.index("whole book")  # the primary metrics first
    data = json.loads(out.read_text())
    assert set(data) == {"as_of", "horizon_days", "n_customers", "churn_rate", "families", "dates", "comparison"}
    assert data["as_of"] == "2025-11-01" and [d["as_of"] for d in data["dates"]] == ["2025-10-02", "2025-11-01"]
    assert set(data["families"]["logreg"]) == METRICS
    vs = data["comparison"]["families"]["logreg"]["active"]["vs_reference"]
    assert vs["low"] <= vs["diff"] <= vs["high"]
    run = BacktestRun.objects.get()
    assert run.horizon_days == 60 and run.n_customers == data["n_customers"]
    assert run.churn_rate == pytest.approx(data["churn_rate"])
    assert {"roc", "pr", "calibration", "lift", "score_hist"} <= set(run.results["families"]["lightgbm"])
    assert not ModelVersion.objects.exists()  # a backtest never registers or promotes a model


@pytest.mark.django_db
def test_command_errors_are_plain_messages():
    synth_into_db(40, days=420, seed=8)
    with pytest.raises(CommandError, match="outside the data"):
        call_command("backtest", "--as-of", "2030-01-01", "--families", "logreg", "--no-progress")
    with pytest.raises(CommandError, match="--as-of must be YYYY-MM-DD"):
        call_command("backtest", "--as-of", "01/11/2025", "--families", "logreg")
    with pytest.raises(CommandError, match="too few labelled customers"):
        call_command("backtest", "--as-of", "2025-11-01", "--horizon-days", "60", "--families", "logreg", "--no-progress")
