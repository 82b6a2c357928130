"""Reading import files as records: lines decoded one by one, CSV and JSONL, problems kept with their line numbers."""
from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterator


from crm_plugin.events.parse import MAX_LINE_BYTES, Problems

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


def decoded_lines(handle, problems: Problems, on_bytes: Callable[[int], None]) -> Iterator[str]:
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


def csv_records(lines: Iterator[str], problems: Problems, *, required: tuple[str, ...],
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
    repeated = sorted(h for h, n in Counter(header).items() if n > 1)
    if repeated:
        # csv.DictReader-style zipping would let the last one silently win.
        problems.add(None, None, f"column(s) {', '.join(repr(h) for h in repeated)} appear more than once in the "
                                 "header; give each column once", line=1)
        return
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


def jsonl_records(lines: Iterator[str], problems: Problems) -> Iterator[tuple[int, int, dict]]:
    row_number = 0
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row_number += 1
        if line == _UNREADABLE:
            continue  # already reported
        try:
            record = json.loads(line)
        except RecursionError:
            problems.add(row_number, None, "is not valid JSON (nested too deeply)", line=line_number)
            continue
        except ValueError as exc:
            problems.add(row_number, None, f"is not valid JSON ({getattr(exc, 'msg', exc)})", line=line_number)
            continue
        if not isinstance(record, dict):
            problems.add(row_number, None, "must be a JSON object", line=line_number)
            continue
        yield row_number, line_number, record
    if row_number == 0 and not problems.count:
        problems.add(None, None, "the file is empty")
