"""The staging table an import streams into, and the set-based SQL that checks and writes from it in one transaction."""
from __future__ import annotations

import json
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import NamedTuple

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


def _state_sql(alias: str, postgres: bool) -> dict[str, str]:
    """SQL for the state of the event (or row) `alias`: closed / redeemed, and its attributes without the state.

    The state lives in `status`/`closed_at` (tickets) and `redeemed`/`redeemed_at` (coupons): the
    one part of a stored event that a re-send may change. A missing status is open, a missing
    redeemed is unused, as the snapshots read them.
    """
    if postgres:
        return {
            "closed": f"(COALESCE({alias}.attributes->>'status', 'open') = 'closed')",
            "redeemed": f"COALESCE({alias}.attributes->'redeemed' = 'true'::jsonb, false)",
            "ticket_rest": f"({alias}.attributes - 'status' - 'closed_at')",
            "coupon_rest": f"({alias}.attributes - 'redeemed' - 'redeemed_at')",
        }
    return {
        "closed": f"(COALESCE(json_extract({alias}.attributes, '$.status'), 'open') = 'closed')",
        "redeemed": f"COALESCE(json_type({alias}.attributes, '$.redeemed') = 'true', false)",
        "ticket_rest": f"json_remove({alias}.attributes, '$.status', '$.closed_at')",
        "coupon_rest": f"json_remove({alias}.attributes, '$.redeemed', '$.redeemed_at')",
    }


def event_ids_resolve(cursor) -> None:
    """Give every staged row its event id and look it up among the stored events (table import_rows).

    `existing_id` is the stored event with that id, if any; `conflict` says that event is not this
    row (another customer's, or other content). `same_but_state` says the row is that event but for
    a ticket's or coupon's state, and `state_update` that it moves that state forward (an open
    ticket now closed, an unused coupon now redeemed): those are written, other conflicts refused.
    """
    event_table = Event._meta.db_table
    customer_table = Customer._meta.db_table
    postgres = connection.vendor == "postgresql"
    same = "IS NOT DISTINCT FROM" if postgres else "IS"  # NULL-safe equality
    stored, sent = _state_sql("e", postgres), _state_sql("x", postgres)
    # Identical rows in one file are distinct events: number them so each gets its own id,
    # and the same file imported again yields the same ids.
    source = (f"CASE WHEN s.source_id <> '' THEN s.source_id ELSE '{CONTENT_ID_PREFIX}' || s.content_hash || ':' || "
              "CAST(ROW_NUMBER() OVER (PARTITION BY s.content_hash ORDER BY s.line) AS text) END")
    same_fields = (f"c.external_id = x.customer_ext AND e.kind = x.kind AND e.occurred_at = x.occurred_at "
                   f"AND e.amount {same} x.amount AND e.quantity {same} x.quantity AND e.rating {same} x.rating "
                   f"AND e.text = x.text")
    same_but_state = (f"e.id IS NOT NULL AND {same_fields} AND ("
                      f"(x.kind = 'ticket' AND {stored['ticket_rest']} = {sent['ticket_rest']}) OR "
                      f"(x.kind = 'coupon' AND {stored['coupon_rest']} = {sent['coupon_rest']}))")
    forward = (f"(x.kind = 'ticket' AND NOT {stored['closed']} AND {sent['closed']}) OR "
               f"(x.kind = 'coupon' AND NOT {stored['redeemed']} AND {sent['redeemed']})")
    # SQLite compares the attribute texts, which this module always writes with sorted keys.
    cursor.execute(f"DROP TABLE IF EXISTS {'pg_temp' if postgres else 'temp'}.import_rows")
    cursor.execute(
        f"CREATE TEMP TABLE import_rows {'ON COMMIT DROP ' if postgres else ''}AS "
        f"SELECT x.*, e.id AS existing_id, (e.id IS NOT NULL AND NOT ({same_fields} "
        f"AND e.attributes = x.attributes)) AS conflict, "
        f"COALESCE({same_but_state}, false) AS same_but_state, "
        f"COALESCE({same_but_state} AND ({forward}), false) AS state_update "
        f"FROM (SELECT s.*, {source} AS sid FROM import_staging s) x "
        f"LEFT JOIN {event_table} e ON e.source_id = x.sid "
        f"LEFT JOIN {customer_table} c ON c.id = e.customer_id"
    )
    if postgres:
        cursor.execute("ANALYZE import_rows")


def stored_source_ids_check(cursor, problems: Problems) -> None:
    """A source_id already stored is a re-send only if the row repeats that event, or moves its state forward.

    Otherwise skipping it would let whoever sends an id first own it: a sender could claim the
    ids of another customer's future events, which would then be dropped as "already imported".
    The message does not say whose event holds the id; only a row that repeats the stored event
    but for its state (so the sender knows it already) is told what the stored state is.
    """
    event_table = Event._meta.db_table
    cursor.execute(
        f"SELECT r.row_no, r.line, r.sid, r.kind, r.same_but_state, e.attributes, r.attributes "
        f"FROM import_rows r JOIN {event_table} e ON e.id = r.existing_id "
        f"WHERE r.conflict AND NOT r.state_update ORDER BY r.row_no"
    )
    while batch := cursor.fetchmany(1000):
        for row_no, line, sid, kind, same_but_state, stored, sent in batch:
            message = None
            if same_but_state:
                message = _state_refusal(sid, kind, _as_dict(stored), _as_dict(sent))
            if message is None:
                # Said from the row's own kind, so nothing about the stored event is given away.
                tail = {"ticket": ", changing at most its state from open to closed",
                        "coupon": ", changing at most its state from unused to redeemed"}.get(kind, "")
                message = (f"{show_value(sid)} is already the id of a different stored event; a re-sent event must "
                           f"repeat it exactly (same customer, time and content){tail}, a new event needs a new "
                           "source_id")
            problems.add(row_no, "source_id", message, line=line)


def _as_dict(value) -> dict:
    """A JSON column as a dict: psycopg decodes jsonb, SQLite returns the text."""
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def _when(value) -> str:
    """A stored state time for a message, in UTC like the other times the import shows."""
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return show_value(value)
    if at.tzinfo is not None:
        at = at.astimezone(dt_timezone.utc)
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def _same_time(a, b) -> bool:
    if a is None or b is None:
        return a is b
    try:
        return datetime.fromisoformat(str(a)) == datetime.fromisoformat(str(b))
    except ValueError:
        return a == b


def _state_refusal(sid: str, kind: str, stored: dict, sent: dict) -> str | None:
    """Why a re-send that differs from the stored ticket or coupon only in its state is refused.

    None when the state is the same after all (e.g. a key left out rather than its default):
    then the general message applies.
    """
    shown = show_value(sid)
    if kind == "ticket":
        was_closed, now_closed = stored.get("status", "open") == "closed", sent.get("status", "open") == "closed"
        was_at, now_at = stored.get("closed_at"), sent.get("closed_at")
        if was_closed and not now_closed:
            return (f"{shown} is stored as a closed ticket, and a re-send cannot reopen it: a ticket's state only "
                    "moves forward (open to closed); send a reopened ticket as a new event with a new source_id")
        if was_closed and not _same_time(was_at, now_at):
            if was_at is None:
                return (f"{shown} is stored as closed without a closing time; a re-send cannot add one "
                        f"(closed_at {_when(now_at)}): the closing counts from the import that first said so")
            here = f"here {_when(now_at)}" if now_at is not None else "here none"
            return f"{shown} is stored as closed at {_when(was_at)}; a re-send cannot change its closing time ({here})"
    elif kind == "coupon":
        was_redeemed, now_redeemed = stored.get("redeemed") is True, sent.get("redeemed") is True
        was_at, now_at = stored.get("redeemed_at"), sent.get("redeemed_at")
        if was_redeemed and not now_redeemed:
            return (f"{shown} is stored as a redeemed coupon, and a re-send cannot make it unused again: a coupon's "
                    "state only moves forward (unused to redeemed)")
        if was_redeemed and not _same_time(was_at, now_at):
            if was_at is None:
                return (f"{shown} is stored as redeemed without a redemption time; a re-send cannot add one "
                        f"(redeemed_at {_when(now_at)}): the redemption counts from the import that first said so")
            here = f"here {_when(now_at)}" if now_at is not None else "here none"
            return (f"{shown} is stored as redeemed at {_when(was_at)}; a re-send cannot change its redemption time "
                    f"({here})")
    return None


class Written(NamedTuple):
    customers_created: int
    added: int
    tickets_closed: int
    coupons_redeemed: int


def staging_write(cursor, now: datetime) -> Written:
    """Create missing customers, append new events, move each customer's last order forward, and move
    re-sent tickets and coupons forward.

    Only rows whose event is not stored yet count for the customers: re-sending old events changes
    no customer, so a retried or replayed batch cannot put back a customer's old name, email,
    segment or owner.
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
    # segment_since: the segment is known from this import on, not from the customer's first event
    # (snapshots before it treat the segment as unknown).
    cursor.execute(
        f"INSERT INTO {customer_table} (external_id, name, email, segment, segment_since, owner_id, first_seen_at, "
        f"attributes, value, created_at, updated_at) "
        f"SELECT s.customer_ext, s.name, s.email, s.segment, {ts}, s.owner_id, s.first_seen, "
        f"{'%s::jsonb' if postgres else '%s'}, 0, {ts}, {ts} FROM ({first}) s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {customer_table} c WHERE c.external_id = s.customer_ext) "
        # Another import running at the same time may create the same customer first.
        f"ON CONFLICT (external_id) DO NOTHING",
        [now, "{}", now, now],
    )
    created = max(cursor.rowcount, 0)
    # Existing customers: fill in fields the new events provide; move first_seen_at earlier if needed.
    least = "LEAST" if postgres else "MIN"
    cursor.execute(
        f"UPDATE {customer_table} SET "
        f"name = CASE WHEN s.name <> '' THEN s.name ELSE {customer_table}.name END, "
        f"email = CASE WHEN s.email <> '' THEN s.email ELSE {customer_table}.email END, "
        f"segment = CASE WHEN s.segment <> '' THEN s.segment ELSE {customer_table}.segment END, "
        # A changed segment is known from now on; the same segment again keeps its time.
        f"segment_since = CASE WHEN s.segment <> '' AND s.segment <> {customer_table}.segment THEN %s "
        f"ELSE {customer_table}.segment_since END, "
        f"owner_id = COALESCE(s.owner_id, {customer_table}.owner_id), updated_at = %s, "
        f"first_seen_at = CASE WHEN {customer_table}.first_seen_at IS NULL THEN s.first_seen "
        f"ELSE {least}({customer_table}.first_seen_at, s.first_seen) END "
        f"FROM ({first}) s WHERE {customer_table}.external_id = s.customer_ext "
        f"AND (s.name <> '' OR s.email <> '' OR s.segment <> '' OR s.owner_id IS NOT NULL "
        f"OR {customer_table}.first_seen_at IS NULL OR s.first_seen < {customer_table}.first_seen_at)",
        [now, now],
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
    closed, redeemed = (_states_update(cursor, now, kind=kind, postgres=postgres) for kind in ("ticket", "coupon"))
    cursor.execute(f"DROP TABLE IF EXISTS {'pg_temp' if postgres else 'temp'}.import_rows")
    return Written(created, added, closed, redeemed)


def _states_update(cursor, now: datetime, *, kind: str, postgres: bool) -> int:
    """Give stored events of `kind` the re-sent attributes that move their state forward. Returns how many.

    The stored state is checked again in the UPDATE itself: if another import moved it first, this
    one leaves it (PostgreSQL re-reads a row it waited for), so a state never moves twice.
    `state_imported_at` dates the move: snapshots count an undated closing from it.
    """
    event_table = Event._meta.db_table
    state = "closed" if kind == "ticket" else "redeemed"
    if postgres:
        cursor.execute(
            f"UPDATE {event_table} e SET attributes = x.attributes, state_imported_at = %s FROM import_rows x "
            f"WHERE x.state_update AND x.kind = %s AND e.id = x.existing_id AND NOT {_state_sql('e', True)[state]}",
            [now, kind],
        )
    else:  # UPDATE ... FROM needs SQLite 3.33; Django supports older ones
        cursor.execute(
            f"UPDATE {event_table} SET state_imported_at = %s, attributes = (SELECT x.attributes FROM import_rows x "
            f"WHERE x.state_update AND x.existing_id = {event_table}.id) "
            f"WHERE id IN (SELECT existing_id FROM import_rows WHERE state_update AND kind = %s) "
            f"AND NOT {_state_sql(event_table, False)[state]}",
            [now, kind],
        )
    return max(cursor.rowcount, 0)


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
