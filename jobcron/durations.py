"""Durations and points in time as operators type them ("90s", "15m", "1h30m", "7d", ISO 8601): one grammar."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from jobcron.errors import InvalidInput

# one grammar for every duration an operator types (job flags, health thresholds, a schedule's
# --every): numbers (decimals allowed) each followed by a unit, or a bare number of seconds;
# whitespace anywhere is ignored ("1h 30m", "1 h30m"), case too ("2H")
_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600), "d": Decimal(86400)}
_UNITS["w"] = 7 * _UNITS["d"]
_NUMBER = r"\d+(?:\.\d+)?"
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d|w)")
_WHOLE = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d|w))+")
MAX_SECONDS = 100 * 365 * 86400.0
_EXAMPLES = "examples: 90s, 15m, 2h, 1h30m, 7d, 2w; a bare number is seconds"


def _seconds(text: str, what: str) -> Decimal:
    """The exact number of seconds a duration's text says (decimal arithmetic: 0.1h is 360s)."""
    raw = re.sub(r"\s+", "", text).lower()
    if re.fullmatch(_NUMBER, raw):
        seconds = Decimal(raw)
    elif _WHOLE.fullmatch(raw):
        seconds = sum((Decimal(n) * _UNITS[unit] for n, unit in _PART.findall(raw)), Decimal(0))
    else:
        raise InvalidInput(f"{what}: not a duration: {text!r} ({_EXAMPLES})")
    if seconds > Decimal(MAX_SECONDS):
        raise InvalidInput(f"{what}: {text!r} is longer than 100 years")
    return seconds


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in "90", "90s", "15m", "2h", "1h30m", "1.5h", "7d", "2w", "250ms"; InvalidInput naming `what` otherwise."""
    return float(_seconds(text, what))


def parse_whole_seconds(text: str, what: str = "duration") -> int:
    """A positive whole number of seconds in the same grammar (a schedule's --every: "15m", "1.5h", "90")."""
    seconds = _seconds(text, what)
    if seconds <= 0:
        raise InvalidInput(f"{what}: a duration must be positive, got {text!r}")
    if seconds != seconds.to_integral_value():
        raise InvalidInput(f"{what}: {text!r} is not a whole number of seconds")
    return int(seconds)


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
    """Short human form, rounded: 850ms, 42s, 3m 05s, 2h 10m, 3d 4h."""
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


def format_exact(seconds: int) -> str:
    """Whole seconds in the compact form parse_duration reads back: 15m, 1h30m, 2d, 0s."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"
