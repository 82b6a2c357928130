"""Out-of-time backtest: train on what was known before as_of, score at as_of, compare with [as_of, as_of + h) (Django-free).

Leakage guard: the families only ever see events with occurred_at < as_of (the frame is cut
before training_rows runs), so every training and validation label window ends on or before
as_of, and early stopping / calibration use the validation cutoff as_of - horizon.

Closed loop: the test customers are scored as of as_of the way production scores them, as if
untreated (`as_if_untreated`: the question is "churn if we do nothing"), and the metrics are
computed on rows that stand for "no alerts at all" (`untreated_weights`: customers alerted or
acted on in [as_of - horizon, as_of + horizon) are left out, held-out customers weigh 1 / share).
With no alerts or actions every weight is 1 and the figures are the plain ones.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from mlcore.compare import N_BOOT, REFERENCE, active_mask, paired_bootstrap
from mlcore.dataset import evaluation_summary, labelled_rows, training_rows
from mlcore.errors import MlError, NotEnoughData
from mlcore.messages import MessageEmbedder, message_embeddings, message_features_fit
from mlcore.metrics import curves, evaluate
from mlcore.snapshot import as_if_untreated, as_timestamp, prepare_customers, prepare_events
from mlcore.training import BACKTEST_FAMILIES, reads_texts, train_family

METRIC_KEYS = ("roc_auc", "pr_auc", "lift_at_10pct", "capture_at_10pct", "brier", "ece", "train_seconds")
# The test window must be (almost) fully observed: a day of slack for a log that stops mid-day.
WINDOW_SLACK_DAYS = 1


def check_families(families: Sequence[str]) -> list[str]:
    families = list(dict.fromkeys(f.strip() for f in families if f.strip()))
    unknown = [f for f in families if f not in BACKTEST_FAMILIES]
    if unknown or not families:
        raise MlError(f"unknown model families {', '.join(unknown) or '(none)'}; choose from {', '.join(BACKTEST_FAMILIES)}")
    return families


def run_backtest(events: pd.DataFrame, customers: pd.DataFrame, *, as_of, horizon_days: int,
                 families: Sequence[str] = ("bert", "logreg", "lightgbm"), interventions: pd.DataFrame | None = None,
                 alerts: pd.DataFrame | None = None, max_train_minutes: float | None = None, bert_model_path: str | None = None,
                 bert_max_length: int | None = None, tiny: bool = False,
                 progress: Callable[[dict], None] | None = None, log: Callable[[str], None] | None = None,
                 keep_scores: bool = False, events_config: dict | None = None,
                 message_embedder: MessageEmbedder | None = None) -> dict:
    """Train each family before `as_of`, score every customer with history at `as_of`, measure on the next `horizon_days`.

    Returns {"as_of", "horizon_days", "n_customers", "churn_rate", "families": {name: {metrics...,
    "train_seconds", curves...}}, "train_rows", "valid_rows", "valid_cutoff", "evaluation"}. churn_rate
    is what every test customer did; metrics and "untreated_churn_rate" use the evaluation weights
    described by "evaluation" (mlcore.dataset.evaluation_summary). A family that fails is
    reported with {"error": message}; if every family fails, the first error is raised.
    With `message_embedder` every family also gets the message-embedding columns (mlcore.messages),
    from messages before as_of only, their components fitted on the training rows.
    """
    families = check_families(families)
    say = log or (lambda _msg: None)
    as_of_ts = as_timestamp(as_of)
    ev, cu = prepare_events(events), prepare_customers(customers)
    if not len(ev):
        raise NotEnoughData("there are no events yet: import orders (or generate the demo shop) before a backtest")
    first, last = ev["occurred_at"].min(), ev["occurred_at"].max()
    window_end = as_of_ts + pd.Timedelta(days=horizon_days)
    if as_of_ts <= first or window_end > last + pd.Timedelta(days=WINDOW_SLACK_DAYS):
        latest = (last + pd.Timedelta(days=WINDOW_SLACK_DAYS) - pd.Timedelta(days=horizon_days)).normalize()
        raise NotEnoughData(
            f"as_of {as_of_ts:%Y-%m-%d} is outside the data for a {horizon_days}-day backtest: the events run from "
            f"{first:%Y-%m-%d} to {last:%Y-%m-%d}, so as_of + horizon must end by then (as_of at most {latest:%Y-%m-%d})"
        )
    past = ev[ev["occurred_at"] < as_of_ts]  # the models never see anything at or after as_of
    # training_rows also drops alerts and actions from as_of on: the models never see those either.
    texts = reads_texts(families)
    train, valid = training_rows(past, cu, as_of=as_of_ts, horizon_days=horizon_days, interventions=interventions,
                                 alerts=alerts, texts=texts)
    # Test rows: features from the past only (labelled_rows snapshots strictly before as_of);
    # labels from what customers did in [as_of, as_of + h), recorded outcomes included; weights
    # from the alerts and actions around the window (label-side facts, never features).
    test = labelled_rows(ev, cu, [as_of_ts], horizon_days, interventions=interventions, alerts=alerts,
                         evaluation_weights=True, texts=texts)
    featurizer, n_messages = None, 0
    if message_embedder is not None:
        messages = message_embeddings(past, message_embedder)  # the past only, like every other input
        train, valid, featurizer = message_features_fit(train, valid, messages, message_embedder)
        n_messages = len(messages)
        if featurizer is not None:
            test = featurizer.add_to(test, messages)
    y = test.labels.astype(np.int64)
    w = np.asarray(test.sample_weight, dtype=np.float64)
    scored = as_if_untreated(test)  # what production would have said at as_of: churn if we do nothing
    # "Active" = ordered within the horizon before as_of: the customers alerts go to and a
    # retention team can still save, and a harder test than the whole book (long-lapsed
    # customers are easy churners). The primary metrics.
    active = active_mask(test, horizon_days)
    say(f"backtest at {as_of_ts:%Y-%m-%d}, horizon {horizon_days} days: {len(train)} training rows, "
        f"{len(valid)} validation rows (cutoff {(as_of_ts - pd.Timedelta(days=horizon_days)):%Y-%m-%d}), "
        f"{len(test)} customers scored, churn rate {y.mean():.1%}; evaluation: {evaluation_summary(w)['text']}")
    if message_embedder is not None:
        say(f"message embeddings: {n_messages} messages before as_of, {message_embedder.n_encoded} encoded so far, "
            + (f"{len(featurizer.feature_names)} columns" if featurizer else "no columns (no messages)"))
    results: dict = {
        "as_of": f"{as_of_ts:%Y-%m-%d}", "horizon_days": int(horizon_days), "n_customers": int(len(test)),
        "churn_rate": round(float(y.mean()), 6) if len(y) else None, "families": {},
        "train_rows": int(len(train)), "valid_rows": int(len(valid)),
        "valid_cutoff": f"{(as_of_ts - pd.Timedelta(days=horizon_days)):%Y-%m-%d}",
        "max_train_minutes": max_train_minutes,
        "message_features": len(featurizer.feature_names) if featurizer else 0,
        "n_active": int(active.sum()), "active_churn_rate": round(float(y[active].mean()), 6) if active.any() else None,
        "evaluation": evaluation_summary(w),
        "untreated_churn_rate": round(float(np.average(y, weights=w)), 6) if w.sum() > 0 else None,
        # In memory only (run_backtests pairs families on them; never stored or published).
        "_scores": {"y": y, "w": w, "active": active, "p": {}},
    }
    errors: list[Exception] = []
    for name in families:
        started = time.perf_counter()
        say(f"training {name}" + (f" (budget {max_train_minutes:g} min)" if name.startswith("bert") and max_train_minutes else ""))
        try:
            trained = train_family(name, train, valid, max_train_minutes=max_train_minutes,
                                   bert_model_path=bert_model_path, bert_max_length=bert_max_length, tiny=tiny,
                                   progress=progress, horizon_days=horizon_days, events_config=events_config,
                                   messages=featurizer)
            p = trained.predict_proba(scored)
        except (MlError, ValueError, OSError) as exc:
            errors.append(exc)
            results["families"][name] = {"error": str(exc)}
            say(f"{name} failed: {exc}")
            continue
        seconds = time.perf_counter() - started  # training + calibration + scoring the test customers
        entry = {k: _round(v) for k, v in evaluate(y, p, w).items()}
        # Wall-clock training incl. calibration (and MLM pretraining for bert_pretrained).
        entry["train_seconds"] = round(float(trained.valid_metrics.get("train_seconds") or seconds), 1)
        entry["total_seconds"] = round(seconds, 1)
        entry["valid_pr_auc"] = _round(trained.valid_metrics.get("pr_auc"))
        entry["valid_active_pr_auc"] = _round(trained.valid_metrics.get("active_pr_auc"))
        results["_scores"]["p"][name] = p
        entry["hit_time_budget"] = bool(trained.fit_report.hit_time_budget)
        extra = trained.fit_report.extra or {}
        if "best_step" in extra:  # bert families: 0 = fine-tuning never beat the probe it starts from
            entry["steps"] = extra.get("steps")
            entry["best_step"] = extra["best_step"]
            entry["validations"] = extra.get("validations")
        if "fold_best_steps" in extra:  # stacked: the fold models' best steps, and how the trees used them
            entry["fold_best_steps"] = extra["fold_best_steps"]
        if (trained.params.get("pretraining") or extra.get("pretraining")):
            pre = trained.params.get("pretraining") or extra.get("pretraining")
            entry["pretraining"] = {k: pre.get(k) for k in ("steps", "epochs", "eval_loss_before", "eval_loss_after",
                                                             "eval_loss_unigram")}
        entry["active"] = ({k: _round(v) for k, v in evaluate(y[active], p[active], w[active]).items()}
                           if active.any() else {})
        entry.update(curves(y, p, w))
        entry.pop("histogram", None)  # same numbers as score_hist
        results["families"][name] = entry
        # Everything the table shows, as soon as the family is done (a long run may be cut short).
        say(f"{name}: ROC-AUC {_fmt(entry['roc_auc'])}, PR-AUC {_fmt(entry['pr_auc'])}, lift@10% "
            f"{_fmt(entry['lift_at_10pct'])}, capture@10% {_fmt(entry['capture_at_10pct'])}, Brier {_fmt(entry['brier'])}, "
            f"ECE {_fmt(entry['ece'])}; active: ROC-AUC {_fmt(entry['active'].get('roc_auc'))}, PR-AUC "
            f"{_fmt(entry['active'].get('pr_auc'))}; train {entry['train_seconds']:.0f}s, total {seconds:.0f}s"
            + (f"; steps {entry['steps']}, best step {entry['best_step']}, {entry['validations']} validations"
               if "best_step" in entry else ""))
        if entry.get("pretraining"):
            pre = entry["pretraining"]
            say(f"  {name} pretraining: {pre['steps']} steps ({pre['epochs']} epochs), held-out masked-event loss "
                f"{pre['eval_loss_before']} -> {pre['eval_loss_after']} (field frequencies {pre['eval_loss_unigram']})")
        if entry.get("fold_best_steps"):
            say(f"  {name} fold models' best steps: {entry['fold_best_steps']}")
    if errors and len(errors) == len(families):
        raise errors[0]
    if not keep_scores:
        results.pop("_scores")
    return results


def _round(value):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return round(float(value), 6)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def backtest_json(results: dict) -> dict:
    """The published JSON: top-level facts and per-family metrics, without the curves."""
    out = {k: results[k] for k in ("as_of", "horizon_days", "n_customers", "churn_rate")}
    out["families"] = {}
    for name, data in results["families"].items():
        if "error" in data:
            out["families"][name] = {"error": data["error"]}
        else:
            out["families"][name] = {k: data.get(k) for k in METRIC_KEYS}
    return out


ACTIVE_FIRST_KEYS = METRIC_KEYS[:-1]


def backtest_table(results: dict) -> str:
    """A readable fixed-width table: active customers first (the primary metrics), the whole book beside."""
    head = ["family", "ROC-AUC", "PR-AUC", "lift@10%", "capt@10%", "Brier", "ECE", "train s"]
    lines = []
    if results.get("n_active"):
        lines.append(f"active customers (ordered within {results['horizon_days']} days before as_of: "
                     f"{results['n_active']}, churn rate {results['active_churn_rate']:.1%}):")
        lines.append(f"  {head[0]:<22}" + "".join(f"{h:>10}" for h in head[1:-1]))
        for name, data in results["families"].items():
            if data.get("active"):
                cells = [_fmt(data["active"].get(k)) for k in ACTIVE_FIRST_KEYS]
                lines.append(f"  {name:<22}" + "".join(f"{c:>10}" for c in cells))
    lines.append(f"whole book ({results['n_customers']} customers, churn rate {results['churn_rate']:.1%}):")
    lines.append(f"  {head[0]:<22}" + "".join(f"{h:>10}" for h in head[1:]))
    for name, data in results["families"].items():
        if "error" in data:
            lines.append(f"  {name:<22}  failed: {data['error']}")
            continue
        cells = [_fmt(data.get(k)) for k in ACTIVE_FIRST_KEYS] + [f"{data.get('train_seconds') or 0:.0f}"]
        lines.append(f"  {name:<22}" + "".join(f"{c:>10}" for c in cells))
    lines.append(f"as_of {results['as_of']}, horizon {results['horizon_days']} days")
    evaluation = results.get("evaluation") or {}
    if evaluation.get("left_out") or evaluation.get("held_out_weighted"):
        lines.append(f"metrics on {evaluation['text']}; untreated churn rate {results['untreated_churn_rate']:.1%}")
    return "\n".join(lines)


# --- several backtest dates, families compared pairwise -------------------------------------

def backtest_dates(as_of, n_dates: int, step_days: int) -> list[pd.Timestamp]:
    """as_of and the n_dates - 1 cutoffs every `step_days` before it, oldest first."""
    as_of = as_timestamp(as_of)
    if n_dates < 1 or step_days < 1:
        raise MlError("--dates and the step between them must be at least 1")
    return [as_of - pd.Timedelta(days=step_days * k) for k in reversed(range(n_dates))]


def latest_as_of(events: pd.DataFrame, horizon_days: int) -> pd.Timestamp:
    """The latest as_of whose test window is fully observed (the default backtest date)."""
    ev = prepare_events(events)
    if not len(ev):
        raise NotEnoughData("there are no events yet: import orders (or generate the demo shop) before a backtest")
    return latest_cutoff(ev["occurred_at"].max(), horizon_days)


def latest_cutoff(newest_event, horizon_days: int) -> pd.Timestamp:
    """The latest as_of whose label window [as_of, as_of + horizon) ends by the newest event (UTC, midnight).

    `latest_as_of` for a caller that knows only the newest event's time (the model report's hint).
    """
    last = as_timestamp(newest_event) + pd.Timedelta(days=WINDOW_SLACK_DAYS)
    return (last - pd.Timedelta(days=horizon_days)).normalize()


def run_backtests(events: pd.DataFrame, customers: pd.DataFrame, *, as_of=None, horizon_days: int, n_dates: int = 3,
                  step_days: int = 30, families: Sequence[str] = ("logreg", "lightgbm"), n_boot: int = N_BOOT,
                  seed: int = 0, log: Callable[[str], None] | None = None, **kwargs) -> dict:
    """`run_backtest` at `n_dates` rolling cutoffs, then each family against lightgbm, paired.

    Returns {"dates": [run_backtest results, oldest first, without in-memory scores],
    "skipped": [{as_of, error}], "comparison": {"reference", "n_dates", "families": {name:
    {"active": {...}, "all": {...}}}}} where each side holds the family's mean metrics over the
    dates and "vs_reference" (mean PR-AUC difference to lightgbm with its 95% paired bootstrap
    interval, customers resampled within each date). A date without enough history is skipped
    and reported; if none works, its error is raised.
    """
    say = log or (lambda _msg: None)
    families = check_families(families)
    as_of = as_timestamp(as_of) if as_of is not None else latest_as_of(events, horizon_days)
    runs, skipped = [], []
    for date in reversed(backtest_dates(as_of, n_dates, step_days)):  # newest first: a bad as_of fails at once
        try:
            runs.insert(0, run_backtest(events, customers, as_of=date, horizon_days=horizon_days, families=families,
                                        log=log, keep_scores=True, **kwargs))
        except NotEnoughData as exc:
            if date == as_of:
                raise
            skipped.insert(0, {"as_of": f"{date:%Y-%m-%d}", "error": str(exc)})
            say(f"skipping {date:%Y-%m-%d}: {exc}")
    comparison = compare_runs(runs, families, n_boot=n_boot, seed=seed)
    for run in runs:
        run.pop("_scores", None)
    return {"as_of": f"{as_of:%Y-%m-%d}", "horizon_days": int(horizon_days), "step_days": int(step_days),
            "dates": runs, "skipped": skipped, "comparison": comparison}


def compare_runs(runs: list[dict], families: Sequence[str], *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Mean metrics per family over the runs, and the paired bootstrap difference to lightgbm."""
    reference = REFERENCE if REFERENCE in families else families[0]
    out: dict = {"reference": reference, "n_dates": len(runs), "n_boot": n_boot, "families": {}}
    for name in families:
        entry: dict = {}
        for side in ("active", "all"):
            got = [r["families"][name] for r in runs if "error" not in r["families"].get(name, {"error": 1})]
            values = [(g["active"] if side == "active" else g) for g in got]
            means = {k: _round(np.nanmean([v[k] for v in values if v.get(k) is not None]))
                     if any(v.get(k) is not None for v in values) else None for k in ACTIVE_FIRST_KEYS}
            means["n_dates"] = len(values)
            if name != reference:
                samples = []
                for r in runs:
                    sc = r.get("_scores") or {}
                    if name in sc.get("p", {}) and reference in sc.get("p", {}):
                        m = sc["active"] if side == "active" else np.ones(len(sc["y"]), bool)
                        samples.append((sc["y"][m], sc["p"][name][m], sc["p"][reference][m], sc["w"][m]))
                if samples:
                    means["vs_reference"] = paired_bootstrap(samples, n_boot=n_boot, seed=seed).to_dict()
            entry[side] = means
        out["families"][name] = entry
    return out


def comparison_table(summary: dict) -> str:
    """Each family's mean over the dates, and its PR-AUC difference to lightgbm with a 95% interval."""
    comp = summary["comparison"]
    ref = comp["reference"]
    lines = [f"{comp['n_dates']} backtest dates ({', '.join(r['as_of'] for r in summary['dates'])}), horizon "
             f"{summary['horizon_days']} days; mean over the dates, PR-AUC difference to {ref} with a 95% paired "
             f"bootstrap interval ({comp['n_boot']} resamples of the customers of each date)"]
    for side, title in (("active", "active customers (the primary metric)"), ("all", "whole book")):
        lines.append(f"{title}:")
        lines.append(f"  {'family':<24}{'PR-AUC':>9}{'ROC-AUC':>9}{'Brier':>8}{'ECE':>8}   difference to {ref} [95% CI]")
        for name, entry in comp["families"].items():
            m = entry[side]
            d = m.get("vs_reference")
            diff = "-" if name == ref else ("n/a" if not d else
                                            f"{d['diff']:+.4f} [{_signed(d['low'])} .. {_signed(d['high'])}]")
            lines.append(f"  {name:<24}{_fmt(m.get('pr_auc')):>9}{_fmt(m.get('roc_auc')):>9}{_fmt(m.get('brier')):>8}"
                         f"{_fmt(m.get('ece')):>8}   {diff}")
    for s in summary.get("skipped") or []:
        lines.append(f"skipped {s['as_of']}: {s['error']}")
    return "\n".join(lines)


def _signed(value) -> str:
    return "-" if value is None else f"{value:+.4f}"
