"""Durations and points in time as operators type them ("90s", "15m", "1h30m", "7d", ISO 8601)."""

from __future__ import annotations

import re
from datetime import datetime

from jobcron.errors import InvalidInput

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w))+\s*$")
MAX_SECONDS = 100 * 365 * 86400.0


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in "90", "90s", "15m", "2h", "1h30m", "7d", "2w"; InvalidInput naming `what` otherwise."""
    raw = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        seconds = float(raw)
    elif _WHOLE.match(raw):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(raw))
    else:
        raise InvalidInput(
            f"{what}: not a duration: {text!r} (examples: 90s, 15m, 2h, 1h30m, 7d, 2w; a bare number is seconds)"
        )
    if seconds > MAX_SECONDS:
        raise InvalidInput(f"{what}: {text!r} is longer than 100 years")
    return seconds


def parse_instant(text: str, what: str = "time") -> datetime:
    """An ISO 8601 date-time with a timezone ("2025-01-31T09:00:00+01:00", "...Z")."""
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise InvalidInput(f"{what}: not an ISO 8601 date-time: {text!r}") from None
    if value.tzinfo is None:
        raise InvalidInput(f"{what}: {text!r} has no timezone; add one, e.g. {raw}Z or {raw}+01:00")
    return value


def parse_since(text: str, what: str = "--since") -> tuple[datetime | None, float | None]:
    """A point in time: an ISO date-time, or a duration meaning that long ago (resolved by the database clock)."""
    raw = text.strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}", raw):
        return parse_instant(raw, what), None
    return None, parse_duration(raw, what)


def format_duration(seconds: float | None) -> str:
    """Short human form: 850ms, 42s, 3m 05s, 2h 10m, 3d 4h."""
    if seconds is None:
        return "-"
    s = max(0.0, float(seconds))
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"
    minutes, sec = divmod(int(s), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"
