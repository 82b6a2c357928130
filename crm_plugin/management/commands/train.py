"""Train every family on everything known now, register the versions and promote the best if it beats the champion."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from crm_plugin.errors import CrmError
from crm_plugin.management.commands._ml import parse_as_of, parse_families
from crm_plugin.scoring.services import last_event_day, model_train_all


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--as-of", help="YYYY-MM-DD (default: the day after the last event)")
        parser.add_argument("--families", help="comma-separated, default settings.ML_TRAIN_FAMILIES")
        parser.add_argument("--horizon-days", type=int, help="default settings.CHURN_HORIZON_DAYS")
        parser.add_argument("--max-train-minutes", type=float,
                            help="BERT wall-clock budget (default settings.ML_BERT_MAX_TRAIN_MINUTES)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        try:
            model_train_all(
                as_of=parse_as_of(opts["as_of"]) or last_event_day(),
                families=parse_families(opts["families"]) or list(settings.ML_TRAIN_FAMILIES),
                horizon_days=opts["horizon_days"],
                max_train_minutes=opts["max_train_minutes"] or settings.ML_BERT_MAX_TRAIN_MINUTES,
                progress_bar=not opts["no_progress"], stdout=self.stdout,
            )
        except CrmError as exc:
            raise CommandError(str(exc)) from exc
