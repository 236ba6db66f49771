"""Per-column type inference from a column's first values, and the parsers it picks."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

# values that mean "no value" (exact spellings: the hot path must not lower-case every cell)
NULLS = frozenset(
    {"", "NA", "N/A", "n/a", "na", "NaN", "nan", "NAN", "null", "NULL", "Null", "None", "none", "NONE"}
    | {"-", "--", "?", "#N/A", "nil", "NIL", "missing", "Missing", "MISSING", "(blank)"}
)
NULLS_LOWER = frozenset(v.lower() for v in NULLS)
TRUE_FALSE = frozenset({"true", "false", "yes", "no", "y", "n", "t", "f"})
DATE_FORMATS = (
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%Y/%m/%d",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%m-%d-%Y",
    "%d %b %Y",
    "%b %d %Y",
    "%Y-%m",
)
_ID_NAME = re.compile(r"(^|[_\s.-])(id|code|no|number|key|zip|postcode|sku|uuid)$", re.IGNORECASE)
_ID_CAMEL = re.compile(r"[a-z](Id|ID)$")
_DECIMAL_COMMA = re.compile(r"^[^,]*\d,\d{1,2}%?$")
_CURRENCY = str.maketrans("", "", "$€£¥ \u00a0")


def is_missing(v: Any) -> bool:
    """True for None, blanks and the usual spellings of 'no value'."""
    if v is None:
        return True
    return isinstance(v, str) and (v in NULLS or v.strip().lower() in NULLS_LOWER)


def _us_number(v: str) -> float:
    v = v.translate(_CURRENCY).replace(",", "")
    if v.endswith("%"):
        v = v[:-1]
    if v.startswith("(") and v.endswith(")"):
        return -float(v[1:-1])  # accounting negative
    return float(v)


def _comma_number(v: str) -> float:
    v = v.translate(_CURRENCY).replace(".", "").replace(",", ".")
    return float(v[:-1] if v.endswith("%") else v)


CLEANERS: dict[str, Callable[[str], float]] = {"thousands": _us_number, "decimal_comma": _comma_number}


def _iso_day(v: str) -> int:
    return date.fromisoformat(v[:10]).toordinal()


def _strptime_day(fmt: str) -> Callable[[str], int]:
    def parse(v: str) -> int:
        head = v.split("T", 1)[0].split(" ", 1)[0] if " " not in fmt else v.replace(",", "")
        return datetime.strptime(head, fmt).toordinal()

    return parse


def day_parser(fmt: str) -> Callable[[str], int]:
    """A function from a date string in `fmt` ("iso" or a strptime format) to its day ordinal."""
    return _iso_day if fmt == "iso" else _strptime_day(fmt)


@dataclass(frozen=True)
class Plan:
    """What a column was inferred to be, from its first values."""

    kind: str  # numeric, identifier, date, boolean, categorical, text, empty
    clean: str | None = None  # numeric: thousands | decimal_comma
    date_format: str | None = None


def _share(values: list[Any], ok: Callable[[Any], bool]) -> float:
    return sum(1 for v in values if ok(v)) / len(values)


def _parses(fn: Callable[[str], Any]) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        try:
            fn(v)
        except (ValueError, OverflowError):
            return False
        return True

    return ok


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return True
    try:
        float(v)
    except (ValueError, TypeError):
        return False
    return True


def infer(name: str, values: list[Any]) -> Plan:
    """Infer a column's kind from its non-missing sample values (95% must agree)."""
    if not values:
        return Plan("empty")
    strings = [v for v in values if isinstance(v, str)]
    if all(isinstance(v, bool) for v in values):
        return Plan("boolean")
    clean: str | None = None
    numeric = _share(values, _is_number) >= 0.95
    if not numeric and strings and len(strings) == len(values):
        comma = sum(1 for v in strings if _DECIMAL_COMMA.match(v.strip()))
        clean = "decimal_comma" if comma > len(strings) / 2 else "thousands"
        numeric = _share(values, _parses(CLEANERS[clean])) >= 0.95
    if numeric:
        nums = [_to_float(v, clean) for v in values]
        integers = all(x is not None and x.is_integer() for x in nums)
        if integers and (_ID_NAME.search(name) or _ID_CAMEL.search(name) or _is_sequence(nums)):
            return Plan("identifier")
        return Plan("numeric", clean=clean)
    if strings and len(strings) == len(values):
        fmt = date_format(strings)
        if fmt is not None:
            return Plan("date", date_format=fmt)
    keys = [str(v) for v in values]
    distinct = len(set(keys))
    if {k.strip().lower() for k in keys} <= TRUE_FALSE:
        return Plan("boolean")
    if (_ID_NAME.search(name) or _ID_CAMEL.search(name)) and distinct > 0.9 * len(keys):
        return Plan("identifier")
    avg_len = sum(len(k) for k in keys) / len(keys)
    if avg_len <= 50 and (distinct <= 50 or distinct <= len(keys) / 2):
        return Plan("categorical")
    return Plan("text")


def _to_float(v: Any, clean: str | None) -> float | None:
    try:
        if isinstance(v, str) and clean is not None:
            return CLEANERS[clean](v)
        return float(v)
    except (ValueError, TypeError):
        return None


def _is_sequence(nums: list[float | None]) -> bool:
    """Integers counting up by one: a row number or a running id, not a measure."""
    return len(nums) >= 20 and all(
        a is not None and b is not None and b - a == 1 for a, b in itertools.pairwise(nums)
    )


def date_format(values: list[str]) -> str | None:
    """The first format that reads 95% of the values; ISO dates and timestamps are tried first."""
    for fmt in ("iso", *DATE_FORMATS):
        ok = _parses(day_parser(fmt))
        # strptime is slow: a format that fails on the first values is not tried on the rest
        if _share(values[:20], ok) >= 0.95 and _share(values, ok) >= 0.95:
            return fmt
    return None
