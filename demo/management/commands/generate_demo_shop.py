"""`manage.py generate_demo_shop`: write a synthetic shop for demos and backtests."""
from __future__ import annotations

import argparse
import time
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from crm_plugin.errors import CrmError
from demo.shop import demo_shop_customer_count, demo_shop_generate


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"must be YYYY-MM-DD; got {text!r}") from exc


class Command(BaseCommand):
    help = "Generate a deterministic synthetic shop: demo owners and sign-ins, customers and their history."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=2000)
        parser.add_argument("--days", type=int, default=365, help="Days of history before the end date.")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--end-date", type=_date, default=None,
                            help="History ends at 00:00 UTC of this day (default: today, UTC).")
        parser.add_argument("--if-empty", action="store_true",
                            help="Do nothing when customers already exist (for `make demo` reruns).")
        parser.add_argument("--replace", action="store_true", help="Delete the previous demo shop first.")
        parser.add_argument("--quiet", action="store_true", help="No progress and no summary.")
        parser.add_argument("--orders-only", action="store_true",
                            help="Only the orders: no visits, reviews, tickets, returns or coupons (a shop that "
                                 "exports transactions only; the same customers place the same orders)")

    def handle(self, *args, customers, days, seed, end_date, if_empty, replace, quiet, orders_only=False, **options):
        if if_empty:
            existing = demo_shop_customer_count()
            if existing:
                self.stdout.write(f"Skipped: the database already has {existing:,} customers "
                                  "(run without --if-empty and with --replace to regenerate the demo shop).")
                return
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            if not quiet and self.stderr.isatty():
                self.stderr.write(f"\r{done:,}/{total:,} customers", ending="")

        try:
            summary = demo_shop_generate(customers=customers, days=days, seed=seed, end_date=end_date,
                                         replace=replace, progress=progress, orders_only=orders_only)
        except CrmError as exc:
            raise CommandError(exc.message) from exc
        if quiet:
            return
        if self.stderr.isatty():
            self.stderr.write("")
        out = self.stdout.write
        out(self.style.SUCCESS(f"Demo shop (seed {seed}) written in {time.monotonic() - started:.1f}s"))
        out(f"  history:   {summary.start:%Y-%m-%d} to {summary.end:%Y-%m-%d} (end exclusive, UTC)")
        out(f"  owners:    {', '.join(summary.owners)}")
        out(f"  customers: {summary.n_customers:,} " + ", ".join(
            f"{name} {count:,}" for name, count in summary.customers_by_segment.items()))
        out(f"  events:    {summary.n_events:,} " + ", ".join(
            f"{kind} {count:,}" for kind, count in summary.events_by_kind.items()))
        out(f"  customers with no order in the last 90 days: {summary.share_no_order_last_90_days:.1%}")
        out("  sign in (CRM views, Slack, admin):")
        for username, password, role in summary.sign_ins:
            out(f"    {username:<7} / {password}   {role}")
