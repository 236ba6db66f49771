"""Bulk enqueue from JSON lines or CSV: streamed through COPY, every bad line reported by its number.

All or nothing by default: the first bad line stops the copy, the rest of the input is still checked
(up to MAX_REPORTED bad lines) so that one run shows what to fix, and the transaction is rolled back.
With skip_bad, bad lines are left out and reported and the good ones are enqueued.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

import psycopg

from jobcron import store
from jobcron.client import DEFAULT_MAX_METADATA_BYTES, KNOWN, check_fields, copy_row, time_ordered_ids
from jobcron.errors import BulkInputError, InvalidInput, JsonRefused
from jobcron.jsontext import parse_json

FORMATS = ("jsonl", "csv")
MAX_REPORTED = 20


@dataclass
class BulkResult:
    """What a bulk enqueue did."""

    inserted: int = 0
    lines: int = 0
    duplicates: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)


def format_for(path: str, given: str | None) -> str:
    """The input format: as given, else from the file name (.csv), else JSON lines."""
    if given:
        return given
    return "csv" if path.lower().endswith(".csv") else "jsonl"


def read_jsonl(source: TextIO) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    """(line number, fields) per non-blank line, or (line number, error message)."""
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            value = parse_json(line)
        except JsonRefused as exc:
            # exc.colno would count from the line end when the error is at the newline itself
            where = "" if exc.pos is None else f" at column {exc.pos + 1}"
            yield number, f"invalid JSON: {exc.reason}{where}"
            continue
        if not isinstance(value, dict):
            yield number, f"expected a JSON object, got {type(value).__name__}"
            continue
        yield number, value


def read_csv(source: TextIO) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    """(line number, fields) per CSV record after the header; empty cells are "not given"."""
    reader = csv.reader(source)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise InvalidInput(f"line 1: bad CSV header: {exc}") from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    unknown = [h for h in header if h not in KNOWN]
    if unknown:
        raise InvalidInput(f"line 1: unknown column {unknown[0]!r} (known: {', '.join(sorted(KNOWN))})")
    width = len(header)
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, f"bad CSV: {exc}"
            continue
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if len(record) != width:
            yield reader.line_num, f"expected {width} fields as in the header, got {len(record)}"
            continue
        yield reader.line_num, {k: v for k, v in zip(header, record, strict=True) if v != ""}


def enqueue_bulk(
    conn: psycopg.Connection[Any],
    source: TextIO,
    fmt: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    skip_bad: bool = False,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
) -> BulkResult:
    """Stream a JSON-lines or CSV input into the queue in one transaction of its own (conn: autocommit)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"--format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    reader = read_jsonl(source) if fmt == "jsonl" else read_csv(source)
    result = BulkResult()
    base = dict(defaults or {})
    ids = time_ordered_ids()
    truncated = False

    def rows(now: datetime) -> Iterator[tuple[Any, ...]]:
        nonlocal truncated
        now_text = now.isoformat()
        for number, item in reader:
            result.lines += 1
            if isinstance(item, str):
                problem = item
            else:
                try:
                    checked = check_fields({**base, **item} if base else item, max_metadata_bytes)
                except InvalidInput as exc:
                    problem = str(exc)
                else:
                    if not result.bad or skip_bad:
                        yield copy_row(checked, ids, now_text)
                    continue
            result.bad.append((number, problem))
            if not skip_bad and len(result.bad) >= MAX_REPORTED:
                truncated = True
                break
        if result.bad and not skip_bad:
            # raised inside the COPY: the copy is aborted and the transaction rolled back
            raise BulkInputError(result.bad, truncated)

    try:
        with conn.transaction():
            inserted, staged = store.ops_enqueue_stream(conn, rows)
    except UnicodeDecodeError as exc:
        # raised while reading the input (decoded in blocks, so no line number); the copy was rolled back
        raise InvalidInput(
            f"--bulk: the input is not UTF-8 text ({exc.reason}); nothing was enqueued"
        ) from None
    result.inserted = inserted
    result.duplicates = staged - inserted
    return result
