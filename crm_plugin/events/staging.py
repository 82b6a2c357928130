"""The staging table an import streams into, and the set-based SQL that writes from it in one transaction."""
from __future__ import annotations

from datetime import datetime

from django.db import connection

from crm_plugin.events.parse import CONTENT_ID_PREFIX, Problems, show_value
from crm_plugin.models import Customer, Event

STAGING_COLUMNS = ("row_no", "line", "customer_ext", "kind", "occurred_at", "amount", "quantity", "rating", "text",
                   "attributes", "source_id", "content_hash", "name", "email", "segment", "owner_id")


# --- staging and writing -----------------------------------------------------------------

class Staging:
    """A temporary table the rows stream into; COPY on PostgreSQL, batched inserts elsewhere."""

    BATCH = 5000

    def __init__(self, cursor) -> None:
        self.cursor = cursor
        self.postgres = connection.vendor == "postgresql"
        self.buffer: list[tuple] = []
        self._copy_cm = None
        self._copy = None

    def __enter__(self) -> "Staging":
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


def event_ids_resolve(cursor) -> None:
    """Give every staged row its event id and look it up among the stored events (table import_rows).

    `existing_id` is the stored event with that id, if any; `conflict` says that event is not this
    row (another customer's, or other content), which the caller refuses.
    """
    event_table = Event._meta.db_table
    customer_table = Customer._meta.db_table
    postgres = connection.vendor == "postgresql"
    same = "IS NOT DISTINCT FROM" if postgres else "IS"  # NULL-safe equality
    # Identical rows in one file are distinct events: number them so each gets its own id,
    # and the same file imported again yields the same ids.
    source = (f"CASE WHEN s.source_id <> '' THEN s.source_id ELSE '{CONTENT_ID_PREFIX}' || s.content_hash || ':' || "
              "CAST(ROW_NUMBER() OVER (PARTITION BY s.content_hash ORDER BY s.line) AS text) END")
    # SQLite compares the attribute texts, which this module always writes with sorted keys.
    cursor.execute(f"DROP TABLE IF EXISTS {'pg_temp' if postgres else 'temp'}.import_rows")
    cursor.execute(
        f"CREATE TEMP TABLE import_rows {'ON COMMIT DROP ' if postgres else ''}AS "
        f"SELECT x.*, e.id AS existing_id, (e.id IS NOT NULL AND NOT ("
        f"c.external_id = x.customer_ext AND e.kind = x.kind AND e.occurred_at = x.occurred_at "
        f"AND e.amount {same} x.amount AND e.quantity {same} x.quantity AND e.rating {same} x.rating "
        f"AND e.text = x.text AND e.attributes = x.attributes)) AS conflict "
        f"FROM (SELECT s.*, {source} AS sid FROM import_staging s) x "
        f"LEFT JOIN {event_table} e ON e.source_id = x.sid "
        f"LEFT JOIN {customer_table} c ON c.id = e.customer_id"
    )
    if postgres:
        cursor.execute("ANALYZE import_rows")


def stored_source_ids_check(cursor, problems: Problems) -> None:
    """A source_id already stored is a re-send only if the row repeats that event exactly.

    Otherwise skipping it would let whoever sends an id first own it: a sender could claim the
    ids of another customer's future events, which would then be dropped as "already imported".
    The message does not say whose event holds the id.
    """
    cursor.execute("SELECT row_no, line, sid FROM import_rows WHERE conflict ORDER BY row_no")
    while batch := cursor.fetchmany(1000):
        for row_no, line, sid in batch:
            problems.add(row_no, "source_id", f"{show_value(sid)} is already the id of a different stored event; "
                                              "a re-sent event must repeat it exactly (same customer, time and "
                                              "content), a new event needs a new source_id", line=line)


def staging_write(cursor, now: datetime) -> tuple[int, int]:
    """Create missing customers, append new events and move each customer's last order forward.
    Returns (customers created, events added).

    Only rows whose event is not stored yet count: re-sending old events changes nothing, so a
    retried or replayed batch cannot put back a customer's old name, email, segment or owner.
    """
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
        f"AS {'bigint' if postgres else 'integer'}) AS owner_id FROM import_rows WHERE existing_id IS NULL "
        "GROUP BY customer_ext"
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
    # Existing customers: fill in fields the new events provide; move first_seen_at earlier if needed.
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
    # ON CONFLICT still matters: another import running at the same time may store an id first.
    conflict = "ON CONFLICT (source_id) DO NOTHING"
    insert = "INSERT INTO" if postgres else "INSERT OR IGNORE INTO"
    cursor.execute(
        f"{insert} {event_table} (customer_id, kind, occurred_at, amount, quantity, rating, text, attributes, "
        f"source_id, imported_at) "
        f"SELECT c.id, x.kind, x.occurred_at, x.amount, x.quantity, x.rating, x.text, x.attributes, x.sid, {ts} "
        f"FROM import_rows x JOIN {customer_table} c ON c.external_id = x.customer_ext "
        f"WHERE x.existing_id IS NULL ORDER BY x.line {conflict if postgres else ''}",
        [now],
    )
    added = max(cursor.rowcount, 0)
    # Each customer's last order, stored for the worklist's "last order" sort: only a newer order
    # moves it (an import of older history leaves it as it is).
    cursor.execute(
        f"UPDATE {customer_table} SET last_order_at = s.last_order "
        f"FROM (SELECT customer_ext, MAX(occurred_at) AS last_order FROM import_rows "
        f"WHERE existing_id IS NULL AND kind = %s GROUP BY customer_ext) s "
        f"WHERE {customer_table}.external_id = s.customer_ext "
        f"AND ({customer_table}.last_order_at IS NULL OR {customer_table}.last_order_at < s.last_order)",
        [Event.Kind.ORDER.value],
    )
    cursor.execute(f"DROP TABLE IF EXISTS {'pg_temp' if postgres else 'temp'}.import_rows")
    return created, added


def source_ids_check(cursor, problems: Problems) -> None:
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
