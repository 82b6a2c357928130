"""Score every customer with the champion model (chunks as a Celery chord on the `score` queue; in-process when eager)."""
from django.core.management.base import BaseCommand, CommandError

from crm_plugin.errors import CrmError
from crm_plugin.management.commands._ml import parse_as_of, quiet_celery_trace, print_riskiest
from crm_plugin.scoring.services import churn_scores_compute, churn_scores_riskiest, last_event_day


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--as-of", help="YYYY-MM-DD (default: the day after the last event)")
        parser.add_argument("--top", type=int, default=10)

    def handle(self, *args, **opts):
        quiet_celery_trace()
        try:
            run = churn_scores_compute(as_of=parse_as_of(opts["as_of"]) or last_event_day())
        except CrmError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"scored {run.n_customers} customers with {run.model_version.name} as of "
                          f"{run.as_of:%Y-%m-%d} ({run.n_encoded} texts encoded)")
        print_riskiest(self.stdout, churn_scores_riskiest(run=run, limit=opts["top"]))
