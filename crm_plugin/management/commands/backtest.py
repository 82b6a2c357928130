"""Out-of-time backtest at --dates rolling cutoffs: train before each, score at it, compare with the next --horizon-days.

Families are compared with lightgbm on active customers first, with paired bootstrap intervals.
Every family gets the message-embedding columns unless ML_MESSAGE_EMBEDDINGS=0 (run both to see
what the customers' words add). Never changes the champion.
"""
import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from crm_plugin.scoring import selectors as selectors_ml
from crm_plugin.errors import CrmError
from crm_plugin.scoring import services as ml
from crm_plugin.scoring.messages import message_embedder
from crm_plugin.management.commands._ml import parse_as_of, parse_families
from crm_plugin.models import BacktestRun
from mlcore.backtest import backtest_json, backtest_table, comparison_table, run_backtests
from mlcore.errors import MlError


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--as-of", help="YYYY-MM-DD: the latest backtest date (default: the latest whose "
                                              "test window is fully observed)")
        parser.add_argument("--dates", type=int, default=3, help="rolling backtest dates ending at --as-of (default 3)")
        parser.add_argument("--step-days", type=int, default=30, help="days between the backtest dates (default 30)")
        parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples (default 1000)")
        parser.add_argument("--horizon-days", type=int, default=settings.CHURN_HORIZON_DAYS)
        parser.add_argument("--families", default="bert,logreg,lightgbm",
                            help="comma-separated: logreg, lightgbm, bert, bert_pretrained, bert_events, bert_events_pretrained, stacked")
        parser.add_argument("--max-train-minutes", type=float,
                            help="wall-clock budget per BERT family (bert_pretrained: half pretraining, half fine-tuning)")
        parser.add_argument("--json", help="write the results JSON (the published format, docs/model.md) here")
        parser.add_argument("--tiny-bert", action="store_true", help="a random tiny BERT instead of BERT_MODEL_PATH (tests)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        if opts["horizon_days"] < 1:
            raise CommandError("--horizon-days must be at least 1")
        as_of = parse_as_of(opts["as_of"])
        embedder = None
        if settings.ML_MESSAGE_EMBEDDINGS:  # vectors through the same cache as training and scoring
            try:
                embedder = message_embedder()
                self.stderr.write(f"message embeddings from encoder {embedder.model_id}")  # a bad path says so here
            except (CrmError, MlError) as exc:
                self.stderr.write(f"message embeddings skipped: {exc}")
                embedder = None
        try:
            summary = run_backtests(
                selectors_ml.events_frame(), selectors_ml.customers_frame(), as_of=as_of,
                n_dates=opts["dates"], step_days=opts["step_days"], n_boot=opts["bootstrap"],
                horizon_days=opts["horizon_days"], families=parse_families(opts["families"]) or [],
                interventions=selectors_ml.interventions_frame(), alerts=selectors_ml.alerts_frame(),
                max_train_minutes=opts["max_train_minutes"],
                bert_model_path=settings.BERT_MODEL_PATH, bert_max_length=settings.ML_BERT_MAX_LENGTH,
                tiny=opts["tiny_bert"], events_config=None if opts["tiny_bert"] else ml.events_config_from_settings(),
                progress=None if opts["no_progress"] else (lambda _event: None), log=self.stderr.write,
                message_embedder=embedder,
            )
        except MlError as exc:
            raise CommandError(str(exc)) from exc
        # The report page reads results["families"][name] (the latest date, with curves); the
        # comparison over every date rides along. The registry is untouched.
        results = dict(summary["dates"][-1], comparison=summary["comparison"], skipped=summary["skipped"],
                       dates=[{k: v for k, v in backtest_json(r).items()} for r in summary["dates"]])
        run = BacktestRun.objects.create(as_of=parse_as_of(results["as_of"]), horizon_days=results["horizon_days"],
                                         n_customers=results["n_customers"], churn_rate=results["churn_rate"] or 0.0,
                                         results=results)
        for r in summary["dates"]:
            self.stdout.write(backtest_table(r))
        self.stdout.write(comparison_table(summary))
        self.stdout.write(f"saved as BacktestRun {run.pk}")
        if opts["json"]:
            published = dict(backtest_json(summary["dates"][-1]), dates=results["dates"],
                             comparison=summary["comparison"])
            Path(opts["json"]).write_text(json.dumps(published, indent=2))
            self.stdout.write(f"wrote {opts['json']}")
