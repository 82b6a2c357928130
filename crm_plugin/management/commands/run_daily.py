"""The daily job in-process: train a first champion if needed (time-budgeted), score everyone, print the riskiest."""
from django.core.management.base import BaseCommand, CommandError

from crm_plugin.errors import CrmError
from crm_plugin.management.commands._ml import parse_as_of, quiet_celery_trace, parse_families, print_riskiest
from crm_plugin.services.daily import daily_job_run
from crm_plugin.scoring.services import last_event_day


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--as-of", help="YYYY-MM-DD (default: the day after the last event)")
        parser.add_argument("--families", help="families to train when there is no champion yet "
                                               "(default settings.ML_DAILY_FAMILIES)")
        parser.add_argument("--bert-max-train-minutes", type=float,
                            help="BERT budget when training first (default settings.ML_DAILY_BERT_MAX_TRAIN_MINUTES)")
        parser.add_argument("--top", type=int, default=10)

    def handle(self, *args, **opts):
        quiet_celery_trace()
        try:
            as_of = parse_as_of(opts["as_of"]) or last_event_day()
            result = daily_job_run(as_of=as_of, stdout=self.stdout, families=parse_families(opts["families"]),
                                   bert_max_train_minutes=opts["bert_max_train_minutes"], top=opts["top"])
        except CrmError as exc:
            raise CommandError(str(exc)) from exc
        print_riskiest(self.stdout, result.riskiest)
