"""Checking and normalising what an import sends: one value at a time, then one record.

Every value that reaches the database is checked here first (text, not objects; no NUL
characters or unpaired surrogates, which PostgreSQL cannot store; bounded lengths and nesting),
so a bad value is a row problem, never a database error.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal, InvalidOperation
from typing import Any


from crm_plugin.errors import CrmError
from crm_plugin.models import Event

FORMATS = ("csv", "jsonl", "transactions")
KINDS = tuple(Event.Kind.values)
MAX_PROBLEMS = 20
MAX_TEXT = 10_000
MAX_ID = 128
MAX_SOURCE_ID = 200
MAX_NAME = 200
MAX_LINE_BYTES = 1_000_000
# The documented attributes are flat; a little nesting is allowed, deep trees are refused before
# anything recurses over them.
MAX_ATTRIBUTE_DEPTH = 10
# Ids of events sent without a source_id start with this (see staging_write); a sender may
# not use it, or it could claim the id of another customer's future event.
CONTENT_ID_PREFIX = "h:"
MAX_AMOUNT = Decimal("9999999999.99")
FUTURE_SLACK = timedelta(days=1)

TRANSACTION_COLUMNS = ("customer_id", "timestamp", "amount")
TRANSACTION_OPTIONAL = ("quantity",)
EVENT_REQUIRED = ("customer_id", "occurred_at")
EVENT_OPTIONAL = ("kind", "amount", "quantity", "rating", "text", "attributes", "source_id",
                  "name", "email", "segment", "owner_email", "closed_at", "redeemed_at")
# Columns that date a change of an event's state after it happened, the kind they belong to, and
# (attribute, value) that the state then has. Stored in `attributes` like the state itself, so
# the whole event stays one row of the append-only log.
STATE_TIME_COLUMNS = {"closed_at": ("ticket", "status", "closed", "closing time"),
                      "redeemed_at": ("coupon", "redeemed", True, "redemption time")}



class Problems:
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

class BadValue(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


# NUL cannot be stored in PostgreSQL text or jsonb; an unpaired surrogate (a lone \ud800-\udfff,
# which JSON's \u escapes can produce) is not Unicode and cannot be encoded as UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _check_storable(value: str, field: str, where: str = "") -> None:
    found = _UNSTORABLE.search(value)
    if found is None:
        return
    if found.group() == "\x00":
        raise BadValue(field, f"{where}contains a NUL character (\\u0000), which cannot be stored; remove it")
    raise BadValue(field, f"{where}contains an unpaired surrogate ({ascii(found.group())[1:-1]}), which is not "
                      "valid Unicode; send the text as UTF-8")


def _json_type(value: Any) -> str:
    """How a value that is not what a field wants looks in JSON, for the error message."""
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    return type(value).__name__


def show_value(value: Any, limit: int = 60, *, quote: bool = True) -> str:
    """A value for an error message (quoted, or as plain text), cut short: messages echo input."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _text(raw: Any, field: str, limit: int, *, required: bool = False) -> str:
    if raw is None:
        value = ""
    elif isinstance(raw, str):
        value = raw.strip()
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = str(raw)  # a numeric id sent as a JSON number
    else:
        raise BadValue(field, f"must be text, not {_json_type(raw)}")
    _check_storable(value, field)
    if required and not value:
        raise BadValue(field, "is empty")
    if len(value) > limit:
        raise BadValue(field, f"is {len(value)} characters long; the limit is {limit}")
    return value


def _timestamp(raw: Any, field: str, now: datetime) -> datetime:
    value = _text(raw, field, 64, required=True)
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise BadValue(field, f"{value!r} is not a date; use ISO 8601 (2026-03-01 or 2026-03-01T14:30:00+00:00) "
                          "or YYYYMMDD") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt_timezone.utc)
    if parsed > now + FUTURE_SLACK:
        raise BadValue(field, f"{value!r} is in the future")
    if parsed.year < 1990:
        raise BadValue(field, f"{value!r} is before 1990")
    return parsed.astimezone(dt_timezone.utc)


def _decimal(raw: Any, field: str) -> Decimal | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float, Decimal)):
        raise BadValue(field, f"must be a number, not {_json_type(raw)}")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise BadValue(field, f"{show_value(raw)} is not a number (use a dot for decimals, no currency sign)") from None
    if not value.is_finite():
        raise BadValue(field, f"{show_value(raw)} is not a finite number")
    if abs(value) > MAX_AMOUNT:
        raise BadValue(field, f"{show_value(raw)} is too large (at most {MAX_AMOUNT})")
    return value.quantize(Decimal("0.01"))


def _int(raw: Any, field: str, low: int, high: int) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float, Decimal)):
        raise BadValue(field, f"must be a whole number, not {_json_type(raw)}")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise BadValue(field, f"{show_value(raw)} is not a whole number") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise BadValue(field, f"{show_value(raw)} is not a whole number")
    if not low <= value <= high:
        raise BadValue(field, f"{show_value(raw, quote=False)} is out of range ({low} to {high})")
    return int(value)


def _attributes(raw: Any) -> dict:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        value = dict(raw)  # a copy: the state times are merged into it, never into the caller's records
    elif isinstance(raw, str):
        try:
            value = json.loads(raw)
        except RecursionError:
            raise BadValue("attributes", f"nests deeper than {MAX_ATTRIBUTE_DEPTH} levels") from None
        except ValueError:
            raise BadValue("attributes", "is not valid JSON") from None
    else:
        value = raw
    if not isinstance(value, dict):
        raise BadValue("attributes", "must be a JSON object like {\"category\": \"shoes\"}")
    _check_json_tree(value)
    if len(json.dumps(value)) > MAX_TEXT:
        raise BadValue("attributes", f"is longer than {MAX_TEXT} characters")
    return value


def _check_json_tree(root: dict) -> None:
    """Every key and string in `attributes` must be storable, numbers finite, nesting shallow.

    Walks with an explicit stack, so a deep tree is refused instead of exhausting Python's.
    """
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_ATTRIBUTE_DEPTH:
            raise BadValue("attributes", f"nests deeper than {MAX_ATTRIBUTE_DEPTH} levels")
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    raise BadValue("attributes", f"has a key that is {_json_type(key)}; keys must be text")
                _check_storable(key, "attributes", "a key ")
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str):
            _check_storable(node, "attributes", "a value ")
        elif isinstance(node, float) and not math.isfinite(node):
            raise BadValue("attributes", "holds NaN or Infinity, which JSON does not allow")
        elif not (node is None or isinstance(node, (bool, int, float))):
            raise BadValue("attributes", f"holds {_json_type(node)}, which JSON cannot store")



# --- normalising one record --------------------------------------------------------------

def record_normalise(record: dict, *, fmt: str, kind: str | None, owners: dict[str, int], now: datetime) -> tuple:
    """Validate one record and return its staging tuple (without the line number)."""
    if fmt == "transactions":
        customer = _text(record.get("customer_id"), "customer_id", MAX_ID, required=True)
        occurred = _timestamp(record.get("timestamp"), "timestamp", now)
        amount = _decimal(record.get("amount"), "amount")
        if amount is None:
            raise BadValue("amount", "is empty")
        quantity = _int(record.get("quantity"), "quantity", 0, 1_000_000)
        return (customer, Event.Kind.ORDER.value, occurred, amount, quantity, None, "", "{}", "",
                _content_hash(customer, "order", occurred, amount, quantity), "", "", "", None)

    unknown = [key for key in record if key not in EVENT_REQUIRED + EVENT_OPTIONAL]
    if unknown:
        # The field name is the sender's key: keep it short and printable in the answer.
        name = unknown[0] if unknown[0].isprintable() and len(unknown[0]) <= 64 else show_value(unknown[0], 64)
        raise BadValue(name, f"is not a known field; allowed: {', '.join(EVENT_REQUIRED + EVENT_OPTIONAL)}")
    customer = _text(record.get("customer_id"), "customer_id", MAX_ID, required=True)
    row_kind = _text(record.get("kind"), "kind", 32) or (kind or "")
    if not row_kind:
        raise BadValue("kind", "is empty; give a kind column or --kind")
    row_kind = row_kind.lower()
    if row_kind not in KINDS:
        raise BadValue("kind", f"{row_kind!r} is not a kind; use one of: {', '.join(KINDS)}")
    if kind and row_kind != kind:
        raise BadValue("kind", f"is {row_kind!r} but --kind {kind} was given")
    occurred = _timestamp(record.get("occurred_at"), "occurred_at", now)
    amount = _decimal(record.get("amount"), "amount")
    quantity = _int(record.get("quantity"), "quantity", 0, 1_000_000)
    rating = _int(record.get("rating"), "rating", 1, 5)
    text = _text(record.get("text"), "text", MAX_TEXT)
    attributes = _attributes(record.get("attributes"))
    source_id = _text(record.get("source_id"), "source_id", MAX_SOURCE_ID)
    if source_id.startswith(CONTENT_ID_PREFIX):
        raise BadValue("source_id", f"may not start with {CONTENT_ID_PREFIX!r}, which marks the ids of events "
                                "sent without a source_id")
    if row_kind == "order" and amount is None:
        raise BadValue("amount", "is required for an order")
    if row_kind == "review" and rating is None:
        raise BadValue("rating", "is required for a review (1 to 5)")
    _state_times_merge(record, row_kind, attributes, occurred, now)
    _check_attribute_conventions(row_kind, attributes, occurred, now)
    name = _text(record.get("name"), "name", MAX_NAME)
    email = _text(record.get("email"), "email", 254)
    if email and "@" not in email:
        raise BadValue("email", f"{email!r} is not an email address")
    segment = _text(record.get("segment"), "segment", 64)
    owner_email = _text(record.get("owner_email"), "owner_email", 254).lower()
    owner_id = None
    if owner_email:
        owner_id = owners.get(owner_email)
        if owner_id is None:
            raise BadValue("owner_email", f"no account owner with email {owner_email!r}")
    attributes_json = json.dumps(attributes, sort_keys=True)
    content = _content_hash(customer, row_kind, occurred, amount, quantity, rating, text, attributes_json)
    return (customer, row_kind, occurred, amount, quantity, rating, text, attributes_json, source_id, content,
            name, email, segment, owner_id)


def _state_times_merge(record: dict, kind: str, attributes: dict, occurred: datetime, now: datetime) -> None:
    """Move the `closed_at` / `redeemed_at` columns into `attributes`, where the state they date lives.

    A column that contradicts the attributes (another time, or a state that says it never
    happened) is refused rather than one of them silently winning.
    """
    for column, (owner, state_key, state, noun) in STATE_TIME_COLUMNS.items():
        raw = record.get(column)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        if kind != owner:
            raise BadValue(column, f"is only for a {owner}; leave it empty for a {kind}")
        at = _timestamp(raw, column, now)
        _check_not_before(at, occurred, column, kind, shown=raw)
        given = attributes.get(column)
        if given is not None and _timestamp_or_none(given, now) != at:
            raise BadValue(column, f"{show_value(raw)} differs from the {noun} in attributes ({show_value(given)}); "
                                   "give it once")
        if state_key in attributes and attributes[state_key] != state:
            said = attributes[state_key]
            said = json.dumps(said) if isinstance(said, bool) else show_value(said)
            raise BadValue(column, f"is given but attributes say {state_key} is {said}; "
                                   f"a {owner} with a {noun} is {column.removesuffix('_at')}")
        attributes[state_key] = state
        attributes[column] = at.isoformat()


def _timestamp_or_none(raw: Any, now: datetime) -> datetime | None:
    try:
        return _timestamp(raw, "attributes", now)
    except BadValue:
        return None


def _check_not_before(at: datetime, occurred: datetime, field: str, kind: str, *, shown: Any, label: str = "") -> None:
    """A ticket cannot close before it was opened, nor a coupon be redeemed before it was issued."""
    if at < occurred:
        what = "the ticket was opened" if kind == "ticket" else "the coupon was issued"
        raise BadValue(field, f"{label}{show_value(shown)} is before {what} (occurred_at "
                              f"{occurred:%Y-%m-%d %H:%M:%S} UTC)")


def _check_attribute_conventions(kind: str, attributes: dict, occurred: datetime, now: datetime) -> None:
    """The attributes the features read must have the agreed types (docs/import.md)."""
    if kind == "ticket":
        status = attributes.get("status", "open")
        if status not in ("open", "closed"):
            raise BadValue("attributes", "a ticket's status must be 'open' or 'closed'")
        closed_at = attributes.get("closed_at")
        if closed_at is not None:
            try:
                at = _timestamp(closed_at, "attributes", now)
            except BadValue:
                raise BadValue("attributes", f"a ticket's closed_at must be an ISO datetime or null, not {show_value(closed_at)}") from None
            if status == "open":
                raise BadValue("attributes", "a ticket with status 'open' cannot have a closed_at; "
                                             "set status 'closed' or closed_at null")
            _check_not_before(at, occurred, "attributes", kind, shown=closed_at, label="a ticket's closed_at ")
    elif kind == "coupon":
        redeemed = attributes.get("redeemed", False)
        if not isinstance(redeemed, bool):
            raise BadValue("attributes", "a coupon's redeemed must be true or false")
        redeemed_at = attributes.get("redeemed_at")
        if redeemed_at is not None:
            try:
                at = _timestamp(redeemed_at, "attributes", now)
            except BadValue:
                raise BadValue("attributes", f"a coupon's redeemed_at must be an ISO datetime or null, not {show_value(redeemed_at)}") from None
            if "redeemed" in attributes and not redeemed:
                raise BadValue("attributes", "a coupon with redeemed false cannot have a redeemed_at; "
                                             "set redeemed true or redeemed_at null")
            _check_not_before(at, occurred, "attributes", kind, shown=redeemed_at, label="a coupon's redeemed_at ")
    elif kind == "visit":
        for key in ("pages", "duration_s"):
            value = attributes.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise BadValue("attributes", f"a visit's {key} must be a number of at least 0, not {show_value(value)}")


def _content_hash(*parts: Any) -> str:
    canonical = "\x1f".join("" if p is None else (p.isoformat() if isinstance(p, datetime) else str(p)) for p in parts)
    return hashlib.sha1(canonical.encode()).hexdigest()
