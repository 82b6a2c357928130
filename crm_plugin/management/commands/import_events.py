"""`manage.py import_events PATH --format {csv,jsonl,transactions}`: import shop behaviour, all or nothing."""
from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from crm_plugin.errors import CrmError
from crm_plugin.models import Event
from crm_plugin.events.importing import FORMATS, events_import_file


class Command(BaseCommand):
    help = ("Import events from a file. One bad row means nothing is written; importing the same file again "
            "adds nothing. Schemas: docs/import.md.")

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--format", dest="fmt", choices=FORMATS, required=True,
                            help="csv or jsonl (general events) or transactions (customer_id,timestamp,amount[,quantity])")
        parser.add_argument("--kind", choices=Event.Kind.values,
                            help="the kind of every row, when the file has no kind column")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args, path: Path, fmt: str, kind: str | None, quiet: bool, **options):
        size = path.stat().st_size if path.is_file() else 0
        show = not quiet and sys.stderr.isatty() and size > 1_000_000
        with tqdm(total=size, unit="B", unit_scale=True, desc=f"importing {path.name}", disable=not show,
                  file=sys.stderr) as bar:
            try:
                summary = events_import_file(path=path, fmt=fmt, kind=kind, on_bytes=bar.update)
            except CrmError as exc:
                raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(str(summary)))
