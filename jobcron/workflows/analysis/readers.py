"""Turn decoded text into rows: CSV/TSV (dialect and header sniffed), a JSON array of objects, JSON lines."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jobcron.errors import InvalidJob

MAX_LINE_CHARS = 16 * 1024 * 1024  # one physical line; a bigger one is a runaway file, not data
MAX_RECORD_CHARS = 4 * 1024 * 1024  # one JSON record
MAX_CELL_CHARS = 200  # nested JSON values are kept as text up to this length
MAX_KEYS = 1_000  # distinct JSON keys; records keyed by ids must not grow every row without end
DELIMITERS = (",", ";", "\t", "|")
_NAME_LIKE = re.compile(r"^[^\d\W][\w .()%/#&+-]*$")
_NUMBER = re.compile(r"^[-+]?[$€£]?\s*[\d.,]+%?$")
_WS = re.compile(r"[ \t\r\n]*")


@dataclass
class Table:
    """Rows of a file with their column names (JSON may add columns as new keys appear)."""

    format: str
    columns: list[str]
    rows: Iterator[list[Any]]
    line: Callable[[], int]
    details: dict[str, Any] = field(default_factory=dict)


def open_table(chunks: Iterator[str], names: list[str], shown: str) -> Table:
    """Sniff the format from the file names and the first chunk of text, and read it as a table."""
    first = next(chunks, "")
    while not first.strip():
        more = next(chunks, None)
        if more is None:
            raise InvalidJob(f"analysis: {shown} is empty (only whitespace)")
        first = more  # a long run of blank lines: keep looking
    chunks = itertools.chain([first], chunks)
    ext = next((n.rsplit(".", 1)[-1].lower() for n in names if "." in n), "")
    start = first.lstrip()[:1]
    if ext == "json" and start == "{" and not _one_line_object(first):
        raise InvalidJob(
            f"analysis: {shown}: a JSON file must be an array of objects or JSON lines (one object per line)"
        )
    if ext in ("jsonl", "ndjson") or (start == "{" and ext != "csv"):
        return _jsonl(chunks, shown)
    if ext == "json" or start == "[":
        if start != "[":
            raise InvalidJob(f"analysis: {shown}: a JSON file must be an array of objects or JSON lines")
        return _json_array(chunks, shown)
    return _delimited(chunks, first, ext, shown)


# --- CSV / TSV ----------------------------------------------------------------------------------------


class _Lines:
    """Physical lines with their endings, from text chunks (split in C, a chunk at a time)."""

    def __init__(self, chunks: Iterator[str], shown: str) -> None:
        self.chunks = chunks
        self.shown = shown
        self.count = 0  # lines handed out, up to the end of the current chunk

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self._pieces())

    def _pieces(self) -> Iterator[Iterator[str]]:
        carry = ""
        cr_only: bool | None = None
        for text in self.chunks:
            if cr_only is None:
                cr_only = "\r" in text and "\n" not in text  # classic Mac line endings
            if cr_only:
                text = text.replace("\r", "\n")
            cut = text.rfind("\n") + 1
            if not cut:
                carry += text
                if len(carry) > MAX_LINE_CHARS:
                    raise InvalidJob(f"analysis: {self.shown}: line {self.count + 1} is longer than 16 MB")
                continue
            whole, carry = carry + text[:cut], text[cut:]
            self.count += whole.count("\n")
            yield io.StringIO(whole)
        if carry:
            self.count += 1
            yield iter((carry,))


def _delimited(chunks: Iterator[str], first: str, ext: str, shown: str) -> Table:
    sample_text = first[:65536]
    sample_lines = sample_text.splitlines()
    if len(first) > len(sample_text) or not first.endswith(("\n", "\r")):
        sample_lines = sample_lines[:-1] or sample_lines  # the last line may be cut
    sample_lines = [s for s in sample_lines[:200] if s.strip()]
    delimiter = _sniff_delimiter(sample_lines, "\t" if ext in ("tsv", "tab") else ",")
    dialect = _dialect(delimiter)
    rows = list(csv.reader(sample_lines, dialect=_dialect(delimiter, strict=False)))
    header = _has_header(rows)
    lines = _Lines(chunks, shown)
    reader = csv.reader(lines, dialect=dialect)
    try:
        head = next(reader)
    except csv.Error as exc:
        raise InvalidJob(f"analysis: malformed CSV at line {reader.line_num}: {exc}") from None
    ncols = len(head)
    columns = _column_names(head) if header else [f"column_{i + 1}" for i in range(ncols)]
    fmt = "tsv" if delimiter == "\t" else "csv"

    def body() -> Iterator[list[Any]]:
        if not header:
            yield head
        try:
            for row in reader:
                if len(row) != ncols:
                    if not any(f.strip() for f in row):
                        continue  # a blank line
                    raise InvalidJob(
                        f"analysis: malformed {fmt.upper()} at line {reader.line_num}: "
                        f"expected {ncols} fields, found {len(row)}"
                    )
                yield row
        except csv.Error as exc:
            raise InvalidJob(f"analysis: malformed {fmt.upper()} at line {reader.line_num}: {exc}") from None

    details = {"delimiter": delimiter, "header": header, "quotechar": '"'}
    return Table(fmt, columns, body(), lambda: reader.line_num, details)


def _dialect(delimiter: str, *, strict: bool = True) -> type[csv.Dialect]:
    class Sniffed(csv.excel):
        pass

    Sniffed.delimiter = delimiter
    Sniffed.strict = strict
    return Sniffed


def _sniff_delimiter(lines: list[str], preferred: str) -> str:
    """The candidate that splits the sample into the most consistent number of fields (more than one)."""
    best, best_score = preferred, (0.0, 0, 0)
    for d in sorted(DELIMITERS, key=lambda c: c != preferred):
        counts = [len(r) for r in csv.reader(lines, dialect=_dialect(d, strict=False)) if r]
        if not counts:
            continue
        mode = max(set(counts), key=counts.count)
        if mode < 2:
            continue
        score = (counts.count(mode) / len(counts), mode, d == preferred)
        if score > best_score:
            best, best_score = d, (score[0], score[1], int(score[2]))
    return best


def _has_header(rows: list[list[str]]) -> bool:
    """A header is a first row of name-like labels over data that differs from them in kind."""
    if len(rows) < 2:
        return bool(rows) and all(_NAME_LIKE.match(c.strip()) for c in rows[0])
    first, rest = rows[0], rows[1:]
    if not all(c.strip() for c in first) or any(_NUMBER.match(c.strip()) for c in first):
        return False
    for i, label in enumerate(first):
        values = [r[i].strip() for r in rest if i < len(r) and r[i].strip()]
        if values and sum(1 for v in values if _NUMBER.match(v)) > len(values) / 2:
            return True  # a label over numbers
        if label.strip() in values:
            return False  # the "label" is a value of its column
    return all(_NAME_LIKE.match(c.strip()) for c in first)


def _column_names(head: list[str]) -> list[str]:
    names: list[str] = []
    for i, raw in enumerate(head):
        name = raw.strip() or f"column_{i + 1}"
        base, n = name, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


# --- JSON ------------------------------------------------------------------------------------------------


class _Records:
    """Aligns JSON objects to a growing column list; nested objects become `parent.child` columns."""

    def __init__(self, details: dict[str, Any]) -> None:
        self.columns: list[str] = []
        self.index: dict[str, int] = {}
        self.details = details

    def row(self, obj: dict[str, Any]) -> list[Any]:
        out: list[Any] = [None] * len(self.columns)
        for key, value in obj.items():
            if isinstance(value, dict):
                for sub, inner in value.items():
                    self._put(out, f"{key}.{sub}", inner)
            else:
                self._put(out, key, value)
        return out

    def _put(self, out: list[Any], key: str, value: Any) -> None:
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)[:MAX_CELL_CHARS]
        i = self.index.get(key)
        if i is None:
            if len(self.columns) >= MAX_KEYS:
                self.details["ignored_key_values"] = self.details.get("ignored_key_values", 0) + 1
                return
            i = self.index[key] = len(self.columns)
            self.columns.append(key)
            out.append(None)
        out[i] = value


def _jsonl(chunks: Iterator[str], shown: str) -> Table:
    lines = _Lines(chunks, shown)
    details: dict[str, Any] = {}
    records = _Records(details)

    state = {"line": 0}

    def body() -> Iterator[list[Any]]:
        for number, line in enumerate(lines, 1):
            state["line"] = number
            if not line.strip():
                continue
            try:
                obj = json.loads(line, strict=False)
            except json.JSONDecodeError as exc:
                column = min(exc.pos, len(line.rstrip("\r\n"))) + 1  # an error past the end is at its end
                raise InvalidJob(
                    f"analysis: malformed JSON lines at line {number} column {column}: {exc.msg}"
                ) from None
            if not isinstance(obj, dict):
                raise InvalidJob(
                    f"analysis: malformed JSON lines at line {number}: expected an object, "
                    f"found {_json_kind(obj)}"
                )
            yield records.row(obj)

    return Table("jsonl", records.columns, body(), lambda: state["line"], details)


def _json_array(chunks: Iterator[str], shown: str) -> Table:
    details: dict[str, Any] = {}
    records = _Records(details)
    state = {"record": 0}

    def body() -> Iterator[list[Any]]:
        decoder = json.JSONDecoder(strict=False)  # a raw tab inside a string is common and harmless
        buf, pos, lines_before, eof = "", 0, 0, False

        def more() -> bool:
            nonlocal buf, pos, lines_before, eof
            if eof:
                return False
            text = next(chunks, None)
            if text is None:
                eof = True
                return False
            lines_before += buf.count("\n", 0, pos)
            buf, pos = buf[pos:] + text, 0
            return True

        def fail(msg: str, at: int) -> InvalidJob:
            line = lines_before + buf.count("\n", 0, at) + 1
            return InvalidJob(f"analysis: malformed JSON at line {line}: {msg}")

        def skip_ws() -> bool:
            nonlocal pos
            while True:
                pos = _WS.match(buf, pos).end()  # type: ignore[union-attr]
                if pos < len(buf):
                    return True
                if not more():
                    return False

        more()
        skip_ws()
        pos += 1  # the "[" that open_table saw
        count = 0
        while True:
            if not skip_ws():
                raise fail("the array is not closed with ']'", len(buf))
            ch = buf[pos]
            if ch == "]":
                pos += 1
                break
            if count:
                if ch != ",":
                    raise fail(f"expected ',' or ']' after record {count}, found {ch!r}", pos)
                pos += 1
                if not skip_ws():
                    raise fail("the array is not closed with ']'", len(buf))
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    # the record may just continue in the next chunk
                    if len(buf) - pos > MAX_RECORD_CHARS or not more():
                        raise fail(exc.msg, exc.pos) from None
            if not isinstance(obj, dict):
                raise fail(f"expected an object as record {count + 1}, found {_json_kind(obj)}", pos)
            pos = end
            count += 1
            state["record"] = count
            yield records.row(obj)
        if skip_ws():
            raise fail("unexpected text after the closing ']'", pos)

    # records, not lines: a JSON array may hold many records per line
    return Table("json", records.columns, body(), lambda: state["record"], details)


def _one_line_object(text: str) -> bool:
    """True when the first line of text is a whole JSON object (so the file is JSON lines)."""
    try:
        return isinstance(json.loads(text.lstrip().split("\n", 1)[0]), dict)
    except json.JSONDecodeError:
        return False


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a number" if not isinstance(value, bool) else "a boolean"
