"""Importing shop behaviour: one all-or-nothing, idempotent, streaming path for files and the API.

Rows are validated one by one while they stream into a temporary staging table inside one
transaction; if any row is bad, the transaction rolls back and the error lists the problems
with their row numbers. Otherwise set-based SQL creates missing customers and appends the
events, skipping `source_id`s already stored, so re-importing a file adds nothing. Memory
stays flat: neither the file nor its customer ids are held in Python.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.models import AccountOwner, Customer, Event

FORMATS = ("csv", "jsonl", "transactions")
KINDS = tuple(Event.Kind.values)
MAX_PROBLEMS = 20
MAX_TEXT = 10_000
MAX_ID = 128
MAX_SOURCE_ID = 200
MAX_NAME = 200
MAX_LINE_BYTES = 1_000_000
MAX_AMOUNT = Decimal("9999999999.99")
FUTURE_SLACK = timedelta(days=1)

TRANSACTION_COLUMNS = ("customer_id", "timestamp", "amount")
TRANSACTION_OPTIONAL = ("quantity",)
EVENT_REQUIRED = ("customer_id", "occurred_at")
EVENT_OPTIONAL = ("kind", "amount", "quantity", "rating", "text", "attributes", "source_id",
                  "name", "email", "segment", "owner_email")

STAGING_COLUMNS = ("row_no", "line", "customer_ext", "kind", "occurred_at", "amount", "quantity", "rating", "text",
                   "attributes", "source_id", "content_hash", "name", "email", "segment", "owner_id")


@dataclass(frozen=True)
class ImportSummary:
    """What an import did."""

    rows: int
    added: int
    skipped: int
    customers_created: int
    seconds: float

    def __str__(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.rows} rows read, {self.added} events added, {self.skipped} already imported, "
                f"{self.customers_created} customers created in {self.seconds:.1f} s ({rate:,.0f} rows/s)")


class _Problems:
    """Collects row problems: the first MAX_PROBLEMS in full, then only a count."""

    def __init__(self) -> None:
        self.items: list[dict] = []
        self.count = 0

    def add(self, row: int | None, field: str | None, message: str, line: int | None = None) -> None:
        self.count += 1
        if len(self.items) < MAX_PROBLEMS:
            self.items.append({"row": row, "line": line, "field": field, "message": message})

    def raise_if_any(self, source: str) -> None:
        if not self.count:
            return
        lines = []
        for p in self.items:
            if p["row"] is None:
                where = "file" if p["line"] is None else f"line {p['line']}"
            else:
                where = f"row {p['row']}"
                if p["line"] is not None and p["line"] != p["row"]:
                    where += f" (line {p['line']})"
            if p["field"]:
                where += f", column '{p['field']}'"
            lines.append(f"  {where}: {p['message']}")
        if self.count > len(self.items):
            lines.append(f"  ... and {self.count - len(self.items)} more")
        noun = "problem" if self.count == 1 else "problems"
        if any(p["row"] is not None and p["line"] is not None and p["line"] != p["row"] for p in self.items):
            # Spreadsheet users look for the line (the header is line 1); programs count data rows.
            lines.append("  (row N is the N-th data row; line N is the line in the file, as a spreadsheet "
                         "numbers it, with the header as line 1)")
        raise CrmError(f"{source}: nothing was imported, {self.count} {noun}:\n" + "\n".join(lines),
                       problems=self.items, code="invalid_import")


# --- parsing one value -------------------------------------------------------------------

class _Bad(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _text(raw: Any, field: str, limit: int, *, required: bool = False) -> str:
    value = "" if raw is None else str(raw).strip()
    if required and not value:
        raise _Bad(field, "is empty")
    if len(value) > limit:
        raise _Bad(field, f"is {len(value)} characters long; the limit is {limit}")
    return value


def _timestamp(raw: Any, field: str, now: datetime) -> datetime:
    value = _text(raw, field, 64, required=True)
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise _Bad(field, f"{value!r} is not a date; use ISO 8601 (2026-03-01 or 2026-03-01T14:30:00+00:00) "
                          "or YYYYMMDD") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt_timezone.utc)
    if parsed > now + FUTURE_SLACK:
        raise _Bad(field, f"{value!r} is in the future")
    if parsed.year < 1990:
        raise _Bad(field, f"{value!r} is before 1990")
    return parsed.astimezone(dt_timezone.utc)


def _decimal(raw: Any, field: str) -> Decimal | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise _Bad(field, f"{raw!r} is not a number")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise _Bad(field, f"{raw!r} is not a number (use a dot for decimals, no currency sign)") from None
    if not value.is_finite():
        raise _Bad(field, f"{raw!r} is not a finite number")
    if abs(value) > MAX_AMOUNT:
        raise _Bad(field, f"{raw!r} is too large (at most {MAX_AMOUNT})")
    return value.quantize(Decimal("0.01"))


def _int(raw: Any, field: str, low: int, high: int) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise _Bad(field, f"{raw!r} is not a whole number")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise _Bad(field, f"{raw!r} is not a whole number") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise _Bad(field, f"{raw!r} is not a whole number")
    if not low <= value <= high:
        raise _Bad(field, f"{raw} is out of range ({low} to {high})")
    return int(value)


def _attributes(raw: Any) -> dict:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        value = raw
    else:
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            raise _Bad("attributes", "is not valid JSON") from None
    if not isinstance(value, dict):
        raise _Bad("attributes", "must be a JSON object like {\"category\": \"shoes\"}")
    if len(json.dumps(value)) > MAX_TEXT:
        raise _Bad("attributes", f"is longer than {MAX_TEXT} characters")
    return value


# --- reading files -----------------------------------------------------------------------

# Stands in for a line that could not be read, so the readers still count it as a row.
_UNREADABLE = "\ufffe\n"


def _raw_lines(handle) -> Iterator[tuple[bytes | None, int]]:
    """Yield (line, size); None for a line over MAX_LINE_BYTES, which is skipped without being held."""
    while chunk := handle.readline(MAX_LINE_BYTES + 1):
        if len(chunk) <= MAX_LINE_BYTES:
            yield chunk, len(chunk)
            continue
        size = len(chunk)
        while not chunk.endswith(b"\n") and (chunk := handle.readline(MAX_LINE_BYTES + 1)):
            size += len(chunk)
        yield None, size


def _decoded_lines(handle, problems: _Problems, on_bytes: Callable[[int], None]) -> Iterator[str]:
    """Decode a byte stream line by line so an encoding error can name its line."""
    for number, (raw, size) in enumerate(_raw_lines(handle), start=1):
        on_bytes(size)
        if raw is None:
            problems.add(None, None, f"is {size:,} bytes long; the limit is {MAX_LINE_BYTES:,}", line=number)
            yield _UNREADABLE
            continue
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            problems.add(None, None, f"is not UTF-8 text (byte {exc.start + 1}); save the file as UTF-8",
                         line=number)
            yield _UNREADABLE
            continue
        yield text


def _csv_records(lines: Iterator[str], problems: _Problems, *, required: tuple[str, ...],
                 optional: tuple[str, ...]) -> Iterator[tuple[int, int, dict]]:
    csv.field_size_limit(MAX_LINE_BYTES)
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        problems.add(None, None, "the file is empty")
        return
    if header == [_UNREADABLE.strip()]:
        return  # already reported
    header = [h.strip().lower() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        problems.add(None, None, f"missing column(s): {', '.join(missing)}; the header has: {', '.join(header) or '(nothing)'}",
                     line=1)
        return
    unknown = [h for h in header if h not in required + optional]
    if unknown:
        problems.add(None, None, f"unknown column(s): {', '.join(unknown)}; allowed: {', '.join(required + optional)}",
                     line=1)
        return
    row_number = 0
    try:
        for values in reader:
            if not values or all(not v.strip() for v in values):
                continue
            row_number += 1
            if values == [_UNREADABLE.strip()]:
                continue  # already reported
            if len(values) != len(header):
                problems.add(row_number, None, f"has {len(values)} fields, the header has {len(header)}",
                             line=reader.line_num)
                continue
            yield row_number, reader.line_num, dict(zip(header, values))
    except csv.Error as exc:
        problems.add(row_number + 1, None, f"is not valid CSV: {exc}", line=reader.line_num)
    if row_number == 0 and not problems.count:
        problems.add(None, None, "the file has a header but no data rows")


def _jsonl_records(lines: Iterator[str], problems: _Problems) -> Iterator[tuple[int, int, dict]]:
    row_number = 0
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row_number += 1
        if line == _UNREADABLE:
            continue  # already reported
        try:
            record = json.loads(line)
        except ValueError as exc:
            problems.add(row_number, None, f"is not valid JSON ({exc.msg})", line=line_number)
            continue
        if not isinstance(record, dict):
            problems.add(row_number, None, "must be a JSON object", line=line_number)
            continue
        yield row_number, line_number, record
    if row_number == 0 and not problems.count:
        problems.add(None, None, "the file is empty")


# --- normalising one record --------------------------------------------------------------

def _normalise(record: dict, *, fmt: str, kind: str | None, owners: dict[str, int], now: datetime) -> tuple:
    """Validate one record and return its staging tuple (without the line number)."""
    if fmt == "transactions":
        customer = _text(record.get("customer_id"), "customer_id", MAX_ID, required=True)
        occurred = _timestamp(record.get("timestamp"), "timestamp", now)
        amount = _decimal(record.get("amount"), "amount")
        if amount is None:
            raise _Bad("amount", "is empty")
        quantity = _int(record.get("quantity"), "quantity", 0, 1_000_000)
        return (customer, Event.Kind.ORDER.value, occurred, amount, quantity, None, "", "{}", "",
                _content_hash(customer, "order", occurred, amount, quantity), "", "", "", None)

    unknown = [key for key in record if key not in EVENT_REQUIRED + EVENT_OPTIONAL]
    if unknown:
        raise _Bad(unknown[0], f"is not a known field; allowed: {', '.join(EVENT_REQUIRED + EVENT_OPTIONAL)}")
    customer = _text(record.get("customer_id"), "customer_id", MAX_ID, required=True)
    row_kind = _text(record.get("kind"), "kind", 32) or (kind or "")
    if not row_kind:
        raise _Bad("kind", "is empty; give a kind column or --kind")
    row_kind = row_kind.lower()
    if row_kind not in KINDS:
        raise _Bad("kind", f"{row_kind!r} is not a kind; use one of: {', '.join(KINDS)}")
    if kind and row_kind != kind:
        raise _Bad("kind", f"is {row_kind!r} but --kind {kind} was given")
    occurred = _timestamp(record.get("occurred_at"), "occurred_at", now)
    amount = _decimal(record.get("amount"), "amount")
    quantity = _int(record.get("quantity"), "quantity", 0, 1_000_000)
    rating = _int(record.get("rating"), "rating", 1, 5)
    text = _text(record.get("text"), "text", MAX_TEXT)
    attributes = _attributes(record.get("attributes"))
    source_id = _text(record.get("source_id"), "source_id", MAX_SOURCE_ID)
    if row_kind == "order" and amount is None:
        raise _Bad("amount", "is required for an order")
    if row_kind == "review" and rating is None:
        raise _Bad("rating", "is required for a review (1 to 5)")
    _check_attribute_conventions(row_kind, attributes, now)
    name = _text(record.get("name"), "name", MAX_NAME)
    email = _text(record.get("email"), "email", 254)
    if email and "@" not in email:
        raise _Bad("email", f"{email!r} is not an email address")
    segment = _text(record.get("segment"), "segment", 64)
    owner_email = _text(record.get("owner_email"), "owner_email", 254).lower()
    owner_id = None
    if owner_email:
        owner_id = owners.get(owner_email)
        if owner_id is None:
            raise _Bad("owner_email", f"no account owner with email {owner_email!r}")
    attributes_json = json.dumps(attributes, sort_keys=True)
    content = _content_hash(customer, row_kind, occurred, amount, quantity, rating, text, attributes_json)
    return (customer, row_kind, occurred, amount, quantity, rating, text, attributes_json, source_id, content,
            name, email, segment, owner_id)


def _check_attribute_conventions(kind: str, attributes: dict, now: datetime) -> None:
    """The attributes the features read must have the agreed types (docs/import.md)."""
    if kind == "ticket":
        if attributes.get("status", "open") not in ("open", "closed"):
            raise _Bad("attributes", "a ticket's status must be 'open' or 'closed'")
        closed_at = attributes.get("closed_at")
        if closed_at is not None:
            try:
                _timestamp(closed_at, "attributes", now)
            except _Bad:
                raise _Bad("attributes", f"a ticket's closed_at must be an ISO datetime or null, not {closed_at!r}") from None
    elif kind == "coupon" and not isinstance(attributes.get("redeemed", False), bool):
        raise _Bad("attributes", "a coupon's redeemed must be true or false")
    elif kind == "visit":
        for key in ("pages", "duration_s"):
            value = attributes.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise _Bad("attributes", f"a visit's {key} must be a number of at least 0, not {value!r}")


def _content_hash(*parts: Any) -> str:
    canonical = "\x1f".join("" if p is None else (p.isoformat() if isinstance(p, datetime) else str(p)) for p in parts)
    return hashlib.sha1(canonical.encode()).hexdigest()


# --- staging and writing -----------------------------------------------------------------

class _Staging:
    """A temporary table the rows stream into; COPY on PostgreSQL, batched inserts elsewhere."""

    BATCH = 5000

    def __init__(self, cursor) -> None:
        self.cursor = cursor
        self.postgres = connection.vendor == "postgresql"
        self.buffer: list[tuple] = []
        self._copy_cm = None
        self._copy = None

    def __enter__(self) -> "_Staging":
        if self.postgres:
            # ON COMMIT DROP does not fire when the caller's transaction is still open (nested atomic).
            self.cursor.execute("DROP TABLE IF EXISTS pg_temp.import_staging")
            self.cursor.execute(
                "CREATE TEMP TABLE import_staging (row_no integer, line integer, customer_ext varchar(128), kind varchar(16), "
                "occurred_at timestamptz, amount numeric(12,2), quantity integer, rating smallint, text text, "
                "attributes jsonb, source_id varchar(255), content_hash char(40), name varchar(200), "
                "email varchar(254), segment varchar(64), owner_id bigint) ON COMMIT DROP"
            )
            self._copy_cm = self.cursor.copy(f"COPY import_staging ({', '.join(STAGING_COLUMNS)}) FROM STDIN")
            self._copy = self._copy_cm.__enter__()
        else:
            self.cursor.execute("DROP TABLE IF EXISTS temp.import_staging")
            self.cursor.execute(
                "CREATE TEMP TABLE import_staging (row_no integer, line integer, customer_ext text, kind text, occurred_at text, "
                "amount text, quantity integer, rating integer, text text, attributes text, source_id text, "
                "content_hash text, name text, email text, segment text, owner_id integer)"
            )
        return self

    def add(self, row: tuple) -> None:
        if self.postgres:
            self._copy.write_row(row)
            return
        row_no, line, customer, kind, occurred, amount, *rest = row
        self.buffer.append((row_no, line, customer, kind,
                            # Django's own text form, so lookups like occurred_at=... match it exactly.
                            connection.ops.adapt_datetimefield_value(occurred),
                            None if amount is None else str(amount), *rest))
        if len(self.buffer) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            marks = ", ".join(["%s"] * len(STAGING_COLUMNS))
            self.cursor.executemany(f"INSERT INTO import_staging VALUES ({marks})", self.buffer)
            self.buffer = []

    def finish(self) -> None:
        if self.postgres:
            self._copy_cm.__exit__(None, None, None)
            self._copy_cm = None
            self.cursor.execute("ANALYZE import_staging")  # temp tables have no statistics otherwise
        else:
            self.flush()

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._copy_cm is not None:
            # Leave COPY mode before the transaction rolls back.
            try:
                self._copy_cm.__exit__(exc_type or RuntimeError, exc or RuntimeError("aborted"), tb)
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
        if exc_type is None:
            self.cursor.execute(f"DROP TABLE IF EXISTS {'pg_temp' if self.postgres else 'temp'}.import_staging")


def _write_from_staging(cursor, now: datetime) -> tuple[int, int]:
    """Create missing customers and append new events. Returns (customers created, events added)."""
    customer_table = Customer._meta.db_table
    event_table = Event._meta.db_table
    postgres = connection.vendor == "postgresql"
    ts = "%s"
    # One set of customer fields per customer: the last non-empty value in file order wins (a
    # later row is newer data). Prefixing each value with its zero-padded line number lets one
    # MAX() per field find it in a single pass on both databases.
    pad = "LPAD(CAST(line AS text), 10, '0')" if postgres else "printf('%%010d', line)"  # %% because the query has parameters

    def last(column: str) -> str:
        return f"COALESCE(SUBSTR(MAX(CASE WHEN {column} <> '' THEN {pad} || {column} END), 11), '')"

    first = (
        "SELECT customer_ext, "
        "MIN(occurred_at) AS first_seen, "
        f"{last('name')} AS name, {last('email')} AS email, {last('segment')} AS segment, "
        f"CAST(SUBSTR(MAX(CASE WHEN owner_id IS NOT NULL THEN {pad} || CAST(owner_id AS text) END), 11) "
        f"AS {'bigint' if postgres else 'integer'}) AS owner_id FROM import_staging GROUP BY customer_ext"
    )
    cursor.execute(
        f"INSERT INTO {customer_table} (external_id, name, email, segment, owner_id, first_seen_at, attributes, "
        f"value, created_at, updated_at) "
        f"SELECT s.customer_ext, s.name, s.email, s.segment, s.owner_id, s.first_seen, "
        f"{'%s::jsonb' if postgres else '%s'}, 0, {ts}, {ts} FROM ({first}) s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {customer_table} c WHERE c.external_id = s.customer_ext) "
        # Another import running at the same time may create the same customer first.
        f"ON CONFLICT (external_id) DO NOTHING",
        ["{}", now, now],
    )
    created = max(cursor.rowcount, 0)
    # Existing customers: fill in fields the file provides; move first_seen_at earlier if needed.
    least = "LEAST" if postgres else "MIN"
    cursor.execute(
        f"UPDATE {customer_table} SET "
        f"name = CASE WHEN s.name <> '' THEN s.name ELSE {customer_table}.name END, "
        f"email = CASE WHEN s.email <> '' THEN s.email ELSE {customer_table}.email END, "
        f"segment = CASE WHEN s.segment <> '' THEN s.segment ELSE {customer_table}.segment END, "
        f"owner_id = COALESCE(s.owner_id, {customer_table}.owner_id), updated_at = %s, "
        f"first_seen_at = CASE WHEN {customer_table}.first_seen_at IS NULL THEN s.first_seen "
        f"ELSE {least}({customer_table}.first_seen_at, s.first_seen) END "
        f"FROM ({first}) s WHERE {customer_table}.external_id = s.customer_ext "
        f"AND (s.name <> '' OR s.email <> '' OR s.segment <> '' OR s.owner_id IS NOT NULL "
        f"OR {customer_table}.first_seen_at IS NULL OR s.first_seen < {customer_table}.first_seen_at)",
        [now],
    )
    # Identical rows in one file are distinct events: number them so each gets its own id,
    # and the same file imported again yields the same ids.
    source = ("CASE WHEN s.source_id <> '' THEN s.source_id ELSE 'h:' || s.content_hash || ':' || "
              "CAST(ROW_NUMBER() OVER (PARTITION BY s.content_hash ORDER BY s.line) AS text) END")
    conflict = "ON CONFLICT (source_id) DO NOTHING"
    insert = "INSERT INTO" if postgres else "INSERT OR IGNORE INTO"
    cursor.execute(
        f"{insert} {event_table} (customer_id, kind, occurred_at, amount, quantity, rating, text, attributes, "
        f"source_id, imported_at) "
        f"SELECT c.id, x.kind, x.occurred_at, x.amount, x.quantity, x.rating, x.text, x.attributes, x.sid, {ts} "
        f"FROM (SELECT s.*, {source} AS sid FROM import_staging s) x "
        f"JOIN {customer_table} c ON c.external_id = x.customer_ext "
        f"ORDER BY x.line {conflict if postgres else ''}",
        [now],
    )
    return created, max(cursor.rowcount, 0)


def _check_source_ids(cursor, problems: _Problems) -> None:
    """One source_id used for two different events in one input is ambiguous: refuse it.

    The same event repeated word for word is fine (the copy is skipped like a re-import).
    """
    cursor.execute(
        "SELECT s.row_no, s.line, s.source_id, d.first_row FROM import_staging s JOIN ("
        "SELECT source_id, MIN(row_no) AS first_row FROM import_staging WHERE source_id <> '' "
        "GROUP BY source_id HAVING COUNT(DISTINCT content_hash) > 1) d ON d.source_id = s.source_id "
        "WHERE s.row_no > d.first_row ORDER BY s.row_no"
    )
    while batch := cursor.fetchmany(1000):
        for row_no, line, source_id, first_row in batch:
            problems.add(row_no, "source_id", f"{source_id!r} is also the id of row {first_row}, a different event",
                         line=line)


def _run(records: Iterable[tuple[int, int, dict]], *, fmt: str, kind: str | None, source: str,
         problems: _Problems) -> ImportSummary:
    started = time.monotonic()
    now = timezone.now()
    owners = {email.lower(): pk for pk, email in AccountOwner.objects.values_list("pk", "email")}
    rows = 0
    with transaction.atomic(), connection.cursor() as cursor:
        with _Staging(cursor) as staging:
            for row_number, line_number, record in records:
                rows += 1
                try:
                    staged = _normalise(record, fmt=fmt, kind=kind, owners=owners, now=now)
                except _Bad as bad:
                    problems.add(row_number, bad.field, bad.message, line=line_number)
                    continue
                if not problems.count:
                    staging.add((row_number, line_number, *staged))
            problems.raise_if_any(source)
            staging.finish()
            if fmt != "transactions":  # transactions rows never carry a source_id
                _check_source_ids(cursor, problems)
                problems.raise_if_any(source)
            if connection.vendor == "postgresql":
                created, added = _write_from_staging(cursor, now)
            else:  # count instead of trusting rowcount after INSERT ... SELECT
                before = (Customer.objects.count(), Event.objects.count())
                _write_from_staging(cursor, now)
                created = Customer.objects.count() - before[0]
                added = Event.objects.count() - before[1]
    return ImportSummary(rows=rows, added=added, skipped=rows - added, customers_created=created,
                         seconds=time.monotonic() - started)


def events_import_file(*, path: Path | str, fmt: str, kind: str | None = None,
                       on_bytes: Callable[[int], None] | None = None) -> ImportSummary:
    """Import a CSV, JSONL or transactions file, all or nothing. Re-importing it adds nothing.

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
    problems = _Problems()
    with path.open("rb") as handle:
        lines = _decoded_lines(handle, problems, on_bytes or (lambda n: None))
        if fmt == "jsonl":
            records = _jsonl_records(lines, problems)
        elif fmt == "transactions":
            records = _csv_records(lines, problems, required=TRANSACTION_COLUMNS, optional=TRANSACTION_OPTIONAL)
        else:
            required = EVENT_REQUIRED if kind else EVENT_REQUIRED + ("kind",)
            records = _csv_records(lines, problems, required=required,
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
    problems = _Problems()

    def numbered() -> Iterator[tuple[int, int, dict]]:
        for number, record in enumerate(records, start=1):
            if not isinstance(record, dict):
                problems.add(number, None, "must be a JSON object", line=number)
                continue
            yield number, number, record

    return _run(numbered(), fmt="jsonl", kind=kind, source="request", problems=problems)
