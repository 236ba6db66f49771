"""Schedule management: add, update, pause, resume, remove, show and list, as plain functions.

The operator's text (the values of `schedules add/update` flags) is read here, after the row it
changes is known: an update's times are local to the schedule's zone, which may be the stored one.
Refusals are jobcron errors whose messages name the flag or the problem:
- InvalidInput: a definition that cannot work, refused before anything is written;
- ScheduleNotFound, ScheduleNameTaken, ScheduleFinished: the schedule asked for is not in a state
  to do it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from jobcron import store
from jobcron.db import Connection
from jobcron.durations import parse_whole_seconds
from jobcron.errors import (
    DuplicateName,
    InvalidInput,
    JsonRefused,
    ScheduleError,
    ScheduleFinished,
    ScheduleNameTaken,
    ScheduleNotFound,
)
from jobcron.jsontext import parse_json
from jobcron.schedules.firing import first_run, spec_from_row, state_of
from jobcron.schedules.rules import (
    ALL_KIND_FIELDS,
    KIND_FIELDS,
    KINDS,
    WEEKDAY_NAMES,
    describe,
    next_occurrence,
    validate,
    zone,
)

TEMPLATE_FIELDS = (
    "job_type",
    "metadata",
    "user_id",
    "priority",
    "file_id",
    "business_description",
    "timeout_seconds",
    "max_retries",
)
TIMING_FIELDS = (*ALL_KIND_FIELDS, "kind", "timezone", "start_at", "end_at", "max_executions")
FULL_WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CLEAR = "none"  # `update --end none` removes an end (same for --start, --max-executions)


@dataclass(frozen=True)
class Saved:
    """A schedule as add or update wrote it."""

    schedule_id: int
    fields: dict[str, Any]
    next_run_at: datetime | None
    description: str


# --- reading the operator's text ------------------------------------------------------------------------


def _when(value: str | None, flag: str, timezone: str) -> datetime | None:
    """An ISO 8601 date-time; without an offset it is a local time of the schedule's zone."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{flag}: not an ISO 8601 date-time: {value!r} (e.g. 2026-12-01T09:00)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone(timezone))


def _time_of_day(value: str) -> time:
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"--at: expected HH:MM or HH:MM:SS, got {value!r}") from None


def _weekday(text: str, part: str) -> int:
    key = text.strip().lower()
    if key.isdigit() and 1 <= int(key) <= 7:
        return int(key)
    for number, (short, full) in enumerate(zip(WEEKDAY_NAMES, FULL_WEEKDAY_NAMES, strict=True), start=1):
        if key in (short, full):
            return number
    raise InvalidInput(f"--weekdays: unknown day {part!r} (use mon,tue,... or mon-fri or 1-7, Monday is 1)")


def _weekdays(value: str) -> list[int]:
    days: set[int] = set()
    for part in value.split(","):
        first, dash, last = part.partition("-")
        low = _weekday(first, part.strip())
        high = _weekday(last, part.strip()) if dash else low
        if high < low:
            raise InvalidInput(f"--weekdays: {part.strip()!r} runs backwards (Monday is the first day)")
        days.update(range(low, high + 1))
    return sorted(days)


def _metadata(value: str) -> dict[str, Any]:
    try:
        data = parse_json(value)
    except JsonRefused as exc:
        raise InvalidInput(f"--metadata: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("--metadata: must be a JSON object")
    return data


def _max_executions(value: str) -> int | None:
    if value.lower() == CLEAR:
        return None
    if not value.isdigit() or int(value) < 1:
        raise InvalidInput(f"--max-executions: expected a positive integer or {CLEAR!r}, got {value!r}")
    return int(value)


def _fields_from_flags(flags: Mapping[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    """A full definition: the flags given, over the existing row (update) or the defaults (add).

    `flags` holds the text of `schedules add/update` options by their value's name (job_type, kind,
    run_at, every, at, weekdays, day_of_month, cron_expression, timezone, start, end, max_executions,
    metadata, user_id, priority, file_id, business_description, timeout_seconds, max_retries); None
    or absent means not given.
    """
    out: dict[str, Any] = {k: None for k in (*TEMPLATE_FIELDS, *TIMING_FIELDS)}
    out.update({"metadata": {}, "priority": 0, "timezone": "UTC"})
    out.update(base or {})
    if flags.get("timezone") is not None:
        try:
            zone(flags["timezone"])
        except ScheduleError as exc:
            raise InvalidInput(f"--timezone: {exc}") from None
        out["timezone"] = flags["timezone"]
    tz = out["timezone"]
    parsers: dict[str, Any] = {
        "run_at": lambda v: _when(v, "--run-at", tz),
        "every": lambda v: parse_whole_seconds(v, "--every"),
        "at": _time_of_day,
        "weekdays": _weekdays,
        "start": lambda v: None if v.lower() == CLEAR else _when(v, "--start", tz),
        "end": lambda v: None if v.lower() == CLEAR else _when(v, "--end", tz),
        "max_executions": _max_executions,
        "metadata": _metadata,
    }
    names = {"every": "interval_seconds", "at": "time_of_day", "start": "start_at", "end": "end_at"}
    given = {names.get(k, k): parsers.get(k, lambda v: v)(v) for k, v in flags.items() if v is not None}
    if given.get("kind") not in (None, out["kind"]):
        # a new kind drops the timing fields of the old one
        out.update({k: None for k in ALL_KIND_FIELDS if k not in KIND_FIELDS[given["kind"]]})
    out.update(given)
    _check_template(out)
    return out


def _check_template(fields: dict[str, Any]) -> None:
    """The job every occurrence enqueues must pass the queue's constraints."""
    if not fields["job_type"] or len(fields["job_type"]) > 100:
        raise InvalidInput("--type is required (1 to 100 characters)")
    if not fields["kind"]:
        raise InvalidInput(f"--kind is required ({', '.join(KINDS)})")
    if fields["user_id"] == "":
        raise InvalidInput("--user must not be empty")
    if not -1000 <= fields["priority"] <= 1000:
        raise InvalidInput("--priority must be from -1000 to 1000")
    if fields["timeout_seconds"] is not None and fields["timeout_seconds"] < 1:
        raise InvalidInput("--timeout-seconds must be at least 1")
    if fields["max_retries"] is not None and not 0 <= fields["max_retries"] <= 1000:
        raise InvalidInput("--max-retries must be from 0 to 1000")
    if fields["file_id"] is not None:
        try:
            fields["file_id"] = str(uuid.UUID(str(fields["file_id"])))
        except ValueError:
            raise InvalidInput(f"--file-id: not a UUID: {fields['file_id']!r}") from None


def _validated(fields: dict[str, Any]) -> None:
    """Reject a definition that cannot work, before connecting."""
    try:
        validate(spec_from_row(fields))
    except ScheduleError as exc:
        raise InvalidInput(str(exc)) from None


def _plan(fields: dict[str, Any], enabled: bool, now: datetime, count: int) -> dict[str, Any]:
    """The row to write, with its next run; a definition that would never run is refused."""
    next_run = first_run(spec_from_row(fields), now, count) if enabled else None
    if enabled and next_run is None:
        raise InvalidInput(f"the schedule would never run: {_why_never(fields, now, count)}")
    return {
        **{k: fields[k] for k in (*TEMPLATE_FIELDS, *TIMING_FIELDS)},
        "enabled": enabled,
        "next_run_at": next_run,
    }


def _why_never(fields: dict[str, Any], now: datetime, count: int) -> str:
    if fields["max_executions"] is not None and count >= fields["max_executions"]:
        return f"it has run {count} times, max executions is {fields['max_executions']}"
    if fields["kind"] == "once" and fields["run_at"] < now:
        return f"--run-at {fields['run_at'].isoformat()} is in the past"
    if fields["end_at"] is not None and fields["end_at"] < now:
        return f"--end {fields['end_at'].isoformat()} is in the past"
    return "no occurrence falls between its start and end"


def _schedule(conn: Connection, key: str, lock: bool = False) -> dict[str, Any]:
    row = store.schedule_get(conn, key)
    if row is not None and lock:
        row = store.schedule_get_locked(conn, row["id"])
    if row is None:
        raise ScheduleNotFound(f"no schedule {key!r}")
    return row


def _check_file(conn: Connection, fields: dict[str, Any]) -> None:
    if fields["file_id"] is not None and store.get_file(conn, fields["file_id"]) is None:
        raise InvalidInput(f"--file-id: no file {fields['file_id']}")


def described(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A schedules row with its state (active, paused, finished, invalid) and when it runs, in words."""
    try:
        when = describe(spec_from_row(row))
    except ScheduleError as exc:
        when = f"invalid: {exc}"
    return {**row, "state": state_of(row, now), "when": when}


# --- the operations -------------------------------------------------------------------------------------


def new_definition(name: str, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The full definition of a schedule to add, checked without a database."""
    if not name.strip() or name.isdigit() or len(name) > 200:
        raise InvalidInput("NAME must be 1 to 200 characters and not a number (numbers are schedule ids)")
    fields = _fields_from_flags(flags, None)
    _validated(fields)
    return fields


def changed_definition(row: dict[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """A schedule row's definition with the flags given applied, checked, not written (update's preview)."""
    fields = _fields_from_flags(flags, {k: row[k] for k in (*TEMPLATE_FIELDS, *TIMING_FIELDS)})
    _validated(fields)
    return fields


def add(conn: Connection, name: str, fields: dict[str, Any], *, paused: bool = False) -> Saved:
    """Create a schedule from new_definition's fields; one that would never run is refused."""
    row = _plan(fields, not paused, store.schedule_db_now(conn), 0)
    _check_file(conn, fields)
    try:
        schedule_id = store.schedule_insert(conn, {"name": name, **row})
    except DuplicateName:
        raise ScheduleNameTaken(f"a schedule named {name!r} exists already") from None
    return Saved(schedule_id, fields, row["next_run_at"], describe(spec_from_row(fields)))


def update(conn: Connection, key: str, flags: Mapping[str, Any]) -> Saved:
    """Change a schedule's job or timing (flags not given keep their value); paused stays paused."""
    with conn.transaction():
        current = _schedule(conn, key, lock=True)
        fields = changed_definition(current, flags)
        row = _plan(fields, current["enabled"], store.schedule_db_now(conn), current["execution_count"])
        _check_file(conn, fields)
        store.schedule_update(conn, current["id"], row)
    return Saved(current["id"], fields, row["next_run_at"], describe(spec_from_row(fields)))


def set_enabled(conn: Connection, key: str, enabled: bool) -> tuple[dict[str, Any], datetime | None]:
    """Pause or resume a schedule: (its row, its next run, None when paused).

    A resumed schedule fires from its next occurrence on; one with none left is refused.
    """
    with conn.transaction():
        row = _schedule(conn, key, lock=True)
        next_run = None
        if enabled:
            now = store.schedule_db_now(conn)
            try:
                next_run = first_run(spec_from_row(row), now, row["execution_count"])
            except ScheduleError as exc:
                raise InvalidInput(f"schedule {row['id']} cannot be resumed: {exc}") from None
            if next_run is None:
                raise ScheduleFinished(
                    f"schedule {row['id']} has no occurrence left "
                    f"({_why_never(row, now, row['execution_count'])}); change it with `schedules update`"
                )
        store.schedule_set_enabled(conn, row["id"], enabled, next_run)
    return row, next_run


def remove(conn: Connection, key: str) -> dict[str, Any]:
    """Delete a schedule and its execution records (the jobs it enqueued stay); its row as it was."""
    row = _schedule(conn, key)
    store.schedule_delete(conn, row["id"])
    return row


def show(
    conn: Connection, key: str, limit: int
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, int]]:
    """One schedule (described), its latest executions and the number of executions per job status."""
    row = described(_schedule(conn, key), store.schedule_db_now(conn))
    executions = store.schedule_executions(conn, row["id"], limit)
    tally = store.schedule_execution_tally(conn, row["id"])
    return row, executions, tally


def upcoming(fields: dict[str, Any], now: datetime, n: int = 5, count: int = 0) -> list[datetime]:
    """The next n occurrences of a checked definition from now on (fewer when it ends): a form's preview."""
    spec = spec_from_row(fields)
    found: list[datetime] = []
    at = first_run(spec, now, count)
    while at is not None and len(found) < n:
        found.append(at)
        at = next_occurrence(spec, at, count + len(found))
    return found


def list_all(conn: Connection) -> list[dict[str, Any]]:
    """Every schedule, described, with its run count, latest job status and next run."""
    now = store.schedule_db_now(conn)
    return [described(r, now) for r in store.schedule_list(conn)]


def due(conn: Connection) -> list[dict[str, Any]]:
    """Enabled schedules whose next run has come."""
    return store.schedules_due(conn)
