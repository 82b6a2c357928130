"""Out-of-time backtest: train before --as-of, score at it, compare with the next --horizon-days. Never changes the champion."""
import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from crm_plugin.scoring import selectors as selectors_ml
from crm_plugin.management.commands._ml import parse_as_of, parse_families
from crm_plugin.models import BacktestRun
from mlcore.backtest import backtest_json, backtest_table, run_backtest
from mlcore.errors import MlError


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--as-of", required=True, help="YYYY-MM-DD: train on what was known before this day")
        parser.add_argument("--horizon-days", type=int, default=settings.CHURN_HORIZON_DAYS)
        parser.add_argument("--families", default="bert,logreg,lightgbm",
                            help="comma-separated: bert, bert_pretrained, logreg, lightgbm")
        parser.add_argument("--max-train-minutes", type=float,
                            help="wall-clock budget per BERT family (bert_pretrained: half pretraining, half fine-tuning)")
        parser.add_argument("--json", help="write the results JSON (issue 3 format) here")
        parser.add_argument("--tiny-bert", action="store_true", help="a random tiny BERT instead of BERT_MODEL_PATH (tests)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        if opts["horizon_days"] < 1:
            raise CommandError("--horizon-days must be at least 1")
        as_of = parse_as_of(opts["as_of"])
        try:
            results = run_backtest(
                selectors_ml.events_frame(), selectors_ml.customers_frame(), as_of=as_of,
                horizon_days=opts["horizon_days"], families=parse_families(opts["families"]) or [],
                interventions=selectors_ml.interventions_frame(), alerts=selectors_ml.alerts_frame(),
                max_train_minutes=opts["max_train_minutes"],
                bert_model_path=settings.BERT_MODEL_PATH, bert_max_length=settings.ML_BERT_MAX_LENGTH,
                tiny=opts["tiny_bert"],
                progress=None if opts["no_progress"] else (lambda _event: None), log=self.stderr.write,
            )
        except MlError as exc:
            raise CommandError(str(exc)) from exc
        # The report page reads results["families"][name] with metrics and curves; the registry is untouched.
        run = BacktestRun.objects.create(as_of=as_of, horizon_days=results["horizon_days"],
                                         n_customers=results["n_customers"], churn_rate=results["churn_rate"] or 0.0,
                                         results=results)
        self.stdout.write(backtest_table(results))
        self.stdout.write(f"saved as BacktestRun {run.pk}")
        if opts["json"]:
            Path(opts["json"]).write_text(json.dumps(backtest_json(results), indent=2))
            self.stdout.write(f"wrote {opts['json']}")
