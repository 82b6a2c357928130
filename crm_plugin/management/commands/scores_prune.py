"""Thin old score history: daily scores for SCORE_KEEP_DAILY_DAYS, then one a week (beat runs it daily)."""
from django.core.management.base import BaseCommand, CommandError

from crm_plugin.errors import CrmError
from crm_plugin.scoring.retention import churn_scores_prune


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--keep-daily-days", type=int, default=None,
                            help="days of daily scores to keep before each customer's latest (default SCORE_KEEP_DAILY_DAYS)")
        parser.add_argument("--batch-customers", type=int, default=None,
                            help="customers per transaction (default SCORE_PRUNE_BATCH_CUSTOMERS)")
        parser.add_argument("--lookback-days", type=int, default=None,
                            help="only scores up to this many days beyond the daily window (default: all history)")
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")

    def handle(self, *args, **opts):
        try:
            summary = churn_scores_prune(daily_days=opts["keep_daily_days"], batch_customers=opts["batch_customers"],
                                         lookback_days=opts["lookback_days"], dry_run=opts["dry_run"])
        except CrmError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(summary))
