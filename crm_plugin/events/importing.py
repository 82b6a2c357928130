"""Importing shop behaviour: one all-or-nothing, idempotent, streaming path for files and the API.

Rows are validated one by one while they stream into a temporary staging table inside one
transaction; if any row is bad, the transaction rolls back and the error lists the problems
with their row numbers. Otherwise set-based SQL creates missing customers and appends the
events, skipping events already stored, so re-importing a file adds nothing and changes
nothing. A `source_id` already stored counts as that event only when the row repeats it exactly
(same customer, same content); otherwise the row is refused, so nobody can claim another
customer's ids in advance. The one exception is a ticket or coupon re-sent as it stands today:
when it differs from the stored one only by having moved on (an open ticket now closed, an
unused coupon now redeemed), the stored event takes the new state, dated by the import. Memory
stays flat: neither the file nor its customer ids are held in Python.

Values are checked and normalised in `parse.py`, files read in `readers.py`, and the staging
table and the SQL that writes from it are in `staging.py`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import DataError, connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.events.parse import (
    EVENT_OPTIONAL,
    EVENT_REQUIRED,
    FORMATS,
    KINDS,
    TRANSACTION_COLUMNS,
    TRANSACTION_OPTIONAL,
    BadValue,
    Problems,
    record_normalise,
)
from crm_plugin.events.readers import csv_records, decoded_lines, jsonl_records
from crm_plugin.events.staging import (
    Staging,
    event_ids_resolve,
    source_ids_check,
    staging_write,
    stored_source_ids_check,
)
from crm_plugin.models import AccountOwner, Customer, Event


@dataclass(frozen=True)
class ImportSummary:
    """What an import did. `skipped` rows repeated stored events; `updated` ones moved a stored state forward."""

    rows: int
    added: int
    skipped: int
    customers_created: int
    seconds: float
    tickets_closed: int = 0
    coupons_redeemed: int = 0

    @property
    def updated(self) -> int:
        return self.tickets_closed + self.coupons_redeemed

    def __str__(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        moved = [f"{n} {noun}{'' if n == 1 else 's'} {verb}" for n, noun, verb in
                 ((self.tickets_closed, "ticket", "closed"), (self.coupons_redeemed, "coupon", "redeemed")) if n]
        # Only when there were some: most imports move no state, and their line stays as it always was.
        updated = f", {self.updated} events updated ({', '.join(moved)})" if moved else ""
        return (f"{self.rows} rows read, {self.added} events added{updated}, {self.skipped} already imported, "
                f"{self.customers_created} customers created in {self.seconds:.1f} s ({rate:,.0f} rows/s)")


def _run(records: Iterable[tuple[int, int, dict]], *, fmt: str, kind: str | None, source: str,
         problems: Problems) -> ImportSummary:
    started = time.monotonic()
    now = timezone.now()
    owners = {email.lower(): pk for pk, email in AccountOwner.objects.values_list("pk", "email")}
    rows = 0
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            with Staging(cursor) as staging:
                for row_number, line_number, record in records:
                    rows += 1
                    try:
                        staged = record_normalise(record, fmt=fmt, kind=kind, owners=owners, now=now)
                    except BadValue as bad:
                        problems.add(row_number, bad.field, bad.message, line=line_number)
                        continue
                    if not problems.count:
                        staging.add((row_number, line_number, *staged))
                problems.raise_if_any(source)
                staging.finish()
                if fmt != "transactions":  # transactions rows never carry a source_id
                    source_ids_check(cursor, problems)
                    problems.raise_if_any(source)
                event_ids_resolve(cursor)
                stored_source_ids_check(cursor, problems)
                problems.raise_if_any(source)
                if connection.vendor == "postgresql":
                    written = staging_write(cursor, now)
                else:  # count instead of trusting rowcount after INSERT ... SELECT
                    before = (Customer.objects.count(), Event.objects.count())
                    written = staging_write(cursor, now)
                    written = written._replace(customers_created=Customer.objects.count() - before[0],
                                               added=Event.objects.count() - before[1])
    except (DataError, connection.Database.DataError) as exc:
        # The checks above are meant to make this unreachable; if a value still gets past them,
        # the caller gets a clear refusal rather than a database traceback.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CrmError(f"{source}: nothing was imported, the database refused a value: {reason}",
                       code="invalid_import") from None
    updated = written.tickets_closed + written.coupons_redeemed
    return ImportSummary(rows=rows, added=written.added, skipped=rows - written.added - updated,
                         customers_created=written.customers_created, tickets_closed=written.tickets_closed,
                         coupons_redeemed=written.coupons_redeemed, seconds=time.monotonic() - started)


def events_import_file(*, path: Path | str, fmt: str, kind: str | None = None,
                       on_bytes: Callable[[int], None] | None = None) -> ImportSummary:
    """Import a CSV, JSONL or transactions file, all or nothing. Re-importing it adds nothing.

    Tickets and coupons re-sent with their `source_id` may move their stored state forward
    (closed, redeemed); see `ImportSummary`.

    `on_bytes` is called with the size of each line read (for a progress bar).
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise CrmError(f"Unknown format {fmt!r}; use one of: {', '.join(FORMATS)}.", code="invalid_format")
    if kind is not None and kind not in KINDS:
        raise CrmError(f"Unknown kind {kind!r}; use one of: {', '.join(KINDS)}.", code="invalid_kind")
    if fmt == "transactions" and kind not in (None, "order"):
        raise CrmError("A transactions file holds orders only; leave out --kind.", code="invalid_kind")
    if not path.is_file():
        raise CrmError(f"No file at {path}.", code="not_found")
    if path.stat().st_size == 0:
        raise CrmError(f"{path.name}: nothing was imported, the file is empty.", code="invalid_import")
    problems = Problems()
    with path.open("rb") as handle:
        lines = decoded_lines(handle, problems, on_bytes or (lambda n: None))
        if fmt == "jsonl":
            records = jsonl_records(lines, problems)
        elif fmt == "transactions":
            records = csv_records(lines, problems, required=TRANSACTION_COLUMNS, optional=TRANSACTION_OPTIONAL)
        else:
            required = EVENT_REQUIRED if kind else EVENT_REQUIRED + ("kind",)
            records = csv_records(lines, problems, required=required,
                                   optional=tuple(c for c in EVENT_OPTIONAL if c not in required))
        summary = _run(records, fmt=fmt, kind=kind, source=path.name, problems=problems)
    return summary


MAX_API_BATCH = 10_000


def events_import_records(*, records: list[Any], kind: str | None = None) -> ImportSummary:
    """Import a batch of event objects (the API's body), with the same rules as a JSONL file."""
    if not isinstance(records, list) or not records:
        raise CrmError("Send a non-empty list of events under \"events\".", code="invalid_import")
    if len(records) > MAX_API_BATCH:
        raise CrmError(f"{len(records):,} events in one request; send at most {MAX_API_BATCH:,} per request.",
                       code="batch_too_large")
    problems = Problems()

    def numbered() -> Iterator[tuple[int, int, dict]]:
        for number, record in enumerate(records, start=1):
            if not isinstance(record, dict):
                problems.add(number, None, "must be a JSON object", line=number)
                continue
            yield number, number, record

    return _run(numbered(), fmt="jsonl", kind=kind, source="request", problems=problems)


def customer_last_order_refresh(*, customer_ids: list[int] | None = None) -> int:
    """Store `Customer.last_order_at` from the stored orders of these customers (all when None), in one
    UPDATE; returns the number of customers updated.

    The import keeps it current by itself; this is for events written another way (the demo shop's
    generator, a correction added in the admin).
    """
    last = (Event.objects.filter(customer_id=OuterRef("pk"), kind=Event.Kind.ORDER)
            .order_by("-occurred_at").values("occurred_at")[:1])
    qs = Customer.objects.all() if customer_ids is None else Customer.objects.filter(pk__any_of=customer_ids)
    return qs.update(last_order_at=Subquery(last))
