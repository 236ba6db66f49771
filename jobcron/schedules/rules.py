"""When a schedule runs: occurrences of once, interval, daily, weekly, monthly and cron schedules.

Pure functions of a ScheduleSpec and an instant (no database, no clock of their own), so that every
daemon computes the same occurrences. Instants are timezone-aware; results are in UTC.

Local-time rules (daily, weekly, monthly) in the schedule's IANA time zone:
- a time that does not exist (spring forward) runs once, shifted forward by the gap (02:30 -> 03:30);
- a time that exists twice (fall back) runs once, at its first instance.
Cron expressions follow cron's own rule: a skipped time runs once right after the gap, and during a
repeated hour only expressions whose minute or hour field is a wildcard run again.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from jobcron.durations import format_exact
from jobcron.errors import ScheduleError

KINDS = ("once", "interval", "daily", "weekly", "monthly", "cron")
# the timing fields each kind uses; the others must stay empty
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "once": ("run_at",),
    "interval": ("interval_seconds",),
    "daily": ("time_of_day",),
    "weekly": ("time_of_day", "weekdays"),
    "monthly": ("time_of_day", "day_of_month"),
    "cron": ("cron_expression",),
}
ALL_KIND_FIELDS = ("run_at", "interval_seconds", "time_of_day", "weekdays", "day_of_month", "cron_expression")
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_INTERVAL_SECONDS = 366 * 86400
# interval schedules without a start are aligned to the epoch: every 15m fires at :00, :15, :30, :45
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# a non-wildcard cron expression can match every minute of a repeated hour: 60 skips at most
MAX_CRON_SKIPS = 4000
TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class ScheduleSpec:
    """The timing part of a schedule."""

    kind: str
    run_at: datetime | None = None
    interval_seconds: int | None = None
    time_of_day: time | None = None
    weekdays: tuple[int, ...] | None = None
    day_of_month: int | None = None
    cron_expression: str | None = None
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    max_executions: int | None = None


# --- validation ----------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone of that name, or a ScheduleError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin or UTC)"
        ) from None


def validate(spec: ScheduleSpec) -> None:
    """Raise ScheduleError naming the first problem of a definition."""
    if spec.kind not in KINDS:
        raise ScheduleError(f"unknown kind {spec.kind!r} (one of {', '.join(KINDS)})")
    zone(spec.timezone)
    for name in ALL_KIND_FIELDS:
        value = getattr(spec, name)
        if name in KIND_FIELDS[spec.kind]:
            if value is None or value == ():
                raise ScheduleError(f"a {spec.kind} schedule needs {name}")
        elif value is not None:
            raise ScheduleError(f"{name} does not apply to a {spec.kind} schedule")
    for name in ("run_at", "start_at", "end_at"):
        value = getattr(spec, name)
        if value is not None and value.utcoffset() is None:
            raise ScheduleError(f"{name} needs a time zone offset")
    _validate_kind(spec)
    if spec.start_at is not None and spec.end_at is not None and spec.end_at <= spec.start_at:
        raise ScheduleError(
            f"end ({spec.end_at.isoformat()}) must be after start ({spec.start_at.isoformat()})"
        )
    if spec.max_executions is not None and spec.max_executions < 1:
        raise ScheduleError(f"max_executions must be at least 1, got {spec.max_executions}")
    if spec.kind == "once" and spec.run_at is not None:
        if spec.start_at is not None and spec.run_at < spec.start_at:
            raise ScheduleError("run_at is before the start")
        if spec.end_at is not None and spec.run_at > spec.end_at:
            raise ScheduleError("run_at is after the end")


def _validate_kind(spec: ScheduleSpec) -> None:
    if spec.kind == "interval":
        n = spec.interval_seconds
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_INTERVAL_SECONDS:
            raise ScheduleError(f"interval must be from 1 second to 366 days, got {n!r} seconds")
    if spec.time_of_day is not None and spec.time_of_day.tzinfo is not None:
        raise ScheduleError("time_of_day is a local time: give the zone as timezone, not as an offset")
    if spec.kind == "weekly":
        bad = [d for d in spec.weekdays or () if not 1 <= d <= 7]
        if bad:
            raise ScheduleError(f"weekdays are 1 (Monday) to 7 (Sunday), got {bad[0]}")
    if spec.kind == "monthly" and not 1 <= (spec.day_of_month or 0) <= 31:
        raise ScheduleError(f"day_of_month must be from 1 to 31, got {spec.day_of_month}")
    if spec.kind == "cron" and not _cron_matches_ever(cron_fields(spec.cron_expression or "")):
        raise ScheduleError(f"cron expression {spec.cron_expression!r} never matches a date")


@lru_cache(maxsize=1024)
def _cron_matches_ever(fields: tuple[str, ...]) -> bool:
    try:
        _croniter(fields, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterError:
        return False
    return True


# parsing is the costly part of croniter and expressions repeat: every daemon check reads them again
@lru_cache(maxsize=1024)
def cron_fields(expression: str) -> tuple[str, ...]:
    """The fields of a cron expression (macros expanded), or a ScheduleError saying what is wrong."""
    text = expression.strip()
    fields = tuple(CRON_MACROS.get(text.lower(), text).split())
    if len(fields) not in (5, 6):
        raise ScheduleError(
            f"cron expression {expression!r}: expected 5 fields (minute hour day-of-month month "
            f"day-of-week) or 6 with seconds first, got {len(fields)}"
        )
    for part in ",".join(fields).split(","):
        # hashed/random fields differ between processes; every daemon must compute the same times
        if part[:1].upper() in ("H", "R"):
            raise ScheduleError(f"cron expression {expression!r}: H and R fields are not supported")
    try:
        croniter.expand(" ".join(fields), second_at_beginning=len(fields) == 6)
    except (CroniterError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ScheduleError(f"invalid cron expression {expression!r}: {exc}") from None
    return fields


def _croniter(fields: tuple[str, ...], start: datetime) -> croniter:
    return croniter(" ".join(fields), start, second_at_beginning=len(fields) == 6)


def describe(spec: ScheduleSpec) -> str:
    """A one-line human description of when the schedule runs."""
    at = ""
    if spec.time_of_day is not None:
        at = spec.time_of_day.strftime("%H:%M:%S" if spec.time_of_day.second else "%H:%M")
    tz = f" ({spec.timezone})"
    if spec.kind == "once" and spec.run_at is not None:
        return f"once at {local(spec.run_at, spec.timezone)}"
    if spec.kind == "interval":
        return f"every {format_exact(spec.interval_seconds or 0)}"
    if spec.kind == "daily":
        return f"daily at {at}{tz}"
    if spec.kind == "weekly":
        days = ",".join(WEEKDAY_NAMES[d - 1] for d in sorted(set(spec.weekdays or ())))
        return f"weekly on {days} at {at}{tz}"
    if spec.kind == "monthly":
        return f"monthly on day {spec.day_of_month} at {at}{tz}"
    return f"cron '{spec.cron_expression}'{tz}"


def local(instant: datetime, timezone: str) -> str:
    """An instant as ISO 8601 in the schedule's zone (the offset keeps it unambiguous)."""
    return instant.astimezone(zone(timezone)).isoformat()


# --- occurrences ---------------------------------------------------------------------------------------


def next_occurrence(
    spec: ScheduleSpec, after: datetime, count: int = 0, *, inclusive: bool = False
) -> datetime | None:
    """The first occurrence after `after` (or at it, when inclusive) within start, end and max_executions."""
    if spec.max_executions is not None and count >= spec.max_executions:
        return None
    t = after
    if spec.start_at is not None and spec.start_at > t:
        t, inclusive = spec.start_at, True
    occurrence = _next(spec, t, inclusive)
    if occurrence is None or (spec.end_at is not None and occurrence > spec.end_at):
        return None
    return occurrence


def latest_due(spec: ScheduleSpec, now: datetime, not_before: datetime | None = None) -> datetime | None:
    """The latest occurrence at or before now within start and end, and not before not_before."""
    t = now if spec.end_at is None else min(now, spec.end_at)
    occurrence = _prev(spec, t)
    if occurrence is None:
        return None
    if (spec.start_at is not None and occurrence < spec.start_at) or (
        not_before is not None and occurrence < not_before
    ):
        return None
    return occurrence


def _next(spec: ScheduleSpec, t: datetime, inclusive: bool) -> datetime | None:
    """The first raw occurrence after t (at t when inclusive), ignoring start, end and count."""
    t = t.astimezone(UTC)
    if spec.kind == "once":
        assert spec.run_at is not None
        run_at = spec.run_at.astimezone(UTC)
        return run_at if run_at > t or (inclusive and run_at == t) else None
    if spec.kind == "interval":
        anchor, step = (spec.start_at or EPOCH).astimezone(UTC), timedelta(seconds=spec.interval_seconds or 0)
        if t < anchor:
            return anchor
        k, rest = divmod(t - anchor, step)
        return t if inclusive and not rest else anchor + (k + 1) * step
    if spec.kind == "cron":
        return _cron_step(spec, t - TICK if inclusive else t, forward=True)
    for candidate in _calendar(spec, t, forward=True):
        if candidate > t or (inclusive and candidate == t):
            return candidate
    return None


def _prev(spec: ScheduleSpec, t: datetime) -> datetime | None:
    """The last raw occurrence at or before t, ignoring start, end and count."""
    t = t.astimezone(UTC)
    if spec.kind == "once":
        assert spec.run_at is not None
        return spec.run_at.astimezone(UTC) if spec.run_at <= t else None
    if spec.kind == "interval":
        anchor, step = (spec.start_at or EPOCH).astimezone(UTC), timedelta(seconds=spec.interval_seconds or 0)
        return None if t < anchor else anchor + ((t - anchor) // step) * step
    if spec.kind == "cron":
        return _cron_step(spec, t + TICK, forward=False)
    for candidate in _calendar(spec, t, forward=False):
        if candidate <= t:
            return candidate
    return None


def _local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    # fold=0: a skipped time maps past the gap (02:30 -> 03:30), a repeated one to its first instance
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _calendar(spec: ScheduleSpec, t: datetime, *, forward: bool) -> list[datetime]:
    """Candidate daily/weekly/monthly occurrences around t, in the direction asked, in order."""
    tz = zone(spec.timezone)
    assert spec.time_of_day is not None
    today = t.astimezone(tz).date()
    days: list[date] = []
    if spec.kind == "monthly":
        assert spec.day_of_month is not None
        month_index = today.year * 12 + today.month - 1
        # from the month before to three months on: every month has a run (short months: their last day)
        for m in range(month_index - 1, month_index + 3):
            year, month = divmod(m, 12)
            last = calendar.monthrange(year, month + 1)[1]
            days.append(date(year, month + 1, min(spec.day_of_month, last)))
    else:
        # a day either side of t's local date covers any UTC offset; a week and more finds any weekday
        wanted = set(spec.weekdays or range(1, 8))
        days = [d for i in range(-1, 9) if (d := today + timedelta(days=i)).isoweekday() in wanted]
    instants = [_local_instant(d, spec.time_of_day, tz) for d in days]
    return instants if forward else instants[::-1]


def _cron_step(spec: ScheduleSpec, start: datetime, *, forward: bool) -> datetime | None:
    """The cron match after (forward) or before start, minus second passes through a repeated hour."""
    tz = zone(spec.timezone)
    fields = cron_fields(spec.cron_expression or "")
    minute, hour = fields[-5], fields[-4]
    wildcard = minute.startswith("*") or hour.startswith("*")
    it = _croniter(fields, start.astimezone(tz))
    for _ in range(MAX_CRON_SKIPS):
        try:
            found: datetime = it.get_next(datetime) if forward else it.get_prev(datetime)
        except CroniterError:
            return None
        occurrence = found.astimezone(UTC)
        if wildcard or not _second_pass(occurrence, tz):
            return occurrence
    return None


def _second_pass(instant: datetime, tz: ZoneInfo) -> bool:
    """Whether the local time of this instant already happened earlier that night (fall back)."""
    wall = instant.astimezone(tz)
    return wall.fold == 1 and wall.replace(fold=0).utcoffset() != wall.utcoffset()
