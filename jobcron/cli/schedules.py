"""`job_cron schedules ...`: add, list, show, update, pause, resume, remove, due."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time
from typing import Any

import click
import psycopg

from jobcron import store
from jobcron.cli.common import EXIT_CONFIG, EXIT_ERROR, CliState, fail, handled, load_or_exit, open_db
from jobcron.cli.render import echo
from jobcron.db import Connection
from jobcron.schedules.firing import first_run, spec_from_row, state_of
from jobcron.schedules.rules import (
    ALL_KIND_FIELDS,
    KIND_FIELDS,
    KINDS,
    WEEKDAY_NAMES,
    ScheduleError,
    describe,
    local,
    parse_duration,
    validate,
    zone,
)
from jobcron.terminal import printable_data

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


# --- parsing flags -------------------------------------------------------------------------------------


def _when(value: str | None, flag: str, timezone: str) -> datetime | None:
    """An ISO 8601 date-time; without an offset it is a local time of the schedule's zone."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{flag}: not an ISO 8601 date-time: {value!r} (e.g. 2026-12-01T09:00)", EXIT_CONFIG)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone(timezone))


def _time_of_day(value: str) -> time:
    try:
        return time.fromisoformat(value)
    except ValueError:
        fail(f"--at: expected HH:MM or HH:MM:SS, got {value!r}", EXIT_CONFIG)


def _weekday(text: str, part: str) -> int:
    key = text.strip().lower()
    if key.isdigit() and 1 <= int(key) <= 7:
        return int(key)
    for number, (short, full) in enumerate(zip(WEEKDAY_NAMES, FULL_WEEKDAY_NAMES, strict=True), start=1):
        if key in (short, full):
            return number
    fail(f"--weekdays: unknown day {part!r} (use mon,tue,... or mon-fri or 1-7, Monday is 1)", EXIT_CONFIG)


def _weekdays(value: str) -> list[int]:
    days: set[int] = set()
    for part in value.split(","):
        first, dash, last = part.partition("-")
        low = _weekday(first, part.strip())
        high = _weekday(last, part.strip()) if dash else low
        if high < low:
            fail(f"--weekdays: {part.strip()!r} runs backwards (Monday is the first day)", EXIT_CONFIG)
        days.update(range(low, high + 1))
    return sorted(days)


def _metadata(value: str) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        fail(f"--metadata: invalid JSON: {exc.msg} at column {exc.colno}", EXIT_CONFIG)
    except ValueError as exc:  # valid syntax the parser still refuses: an integer of 5,000 digits
        fail(f"--metadata: invalid JSON: {exc}", EXIT_CONFIG)
    if not isinstance(data, dict):
        fail("--metadata: must be a JSON object", EXIT_CONFIG)
    return data


def _interval(value: str) -> int:
    try:
        return int(parse_duration(value).total_seconds())
    except ScheduleError as exc:
        fail(f"--every: {exc}", EXIT_CONFIG)


def _max_executions(value: str) -> int | None:
    if value.lower() == CLEAR:
        return None
    if not value.isdigit() or int(value) < 1:
        fail(f"--max-executions: expected a positive integer or {CLEAR!r}, got {value!r}", EXIT_CONFIG)
    return int(value)


def timing_options(fn: Any) -> Any:
    """The options that say when a schedule runs and what it enqueues."""
    options = [
        click.option("--type", "job_type", help="Job type to enqueue."),
        click.option("--kind", type=click.Choice(KINDS), help="How the schedule repeats."),
        click.option("--run-at", help="once: date-time (ISO 8601; no offset = in --timezone)."),
        click.option("--every", help="interval: 30s, 15m, 2h, 1d, 1h30m ..."),
        click.option("--at", "at", help="daily/weekly/monthly: HH:MM local time."),
        click.option("--weekdays", help="weekly: mon,wed,fri (or 1-7, Monday is 1)."),
        click.option("--day", "day_of_month", type=int, help="monthly: 1-31 (short months: their last day)."),
        click.option("--cron", "cron_expression", help="cron: 5 fields, or 6 with seconds first."),
        click.option("--timezone", help="IANA time zone, e.g. Europe/Berlin (default UTC)."),
        click.option("--start", help=f"Not before this date-time ({CLEAR!r} clears it)."),
        click.option("--end", help=f"Not after this date-time ({CLEAR!r} clears it)."),
        click.option("--max-executions", help=f"Stop after N runs ({CLEAR!r} clears it)."),
        click.option("--metadata", help="JSON object given to every job."),
        click.option("--user", "user_id", help="user_id of the jobs."),
        click.option("--priority", type=int, help="Priority of the jobs (-1000..1000)."),
        click.option("--file-id", help="files.id the jobs read."),
        click.option("--description", "business_description", help="business_description of the jobs."),
        click.option("--timeout-seconds", type=int, help="Hard timeout of each job."),
        click.option("--max-retries", type=int, help="Durable retries of each job (0..1000)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _fields_from_flags(flags: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    """A full definition: the flags given, over the existing row (update) or the defaults (add)."""
    out: dict[str, Any] = {k: None for k in (*TEMPLATE_FIELDS, *TIMING_FIELDS)}
    out.update({"metadata": {}, "priority": 0, "timezone": "UTC"})
    out.update(base or {})
    if flags["timezone"] is not None:
        try:
            zone(flags["timezone"])
        except ScheduleError as exc:
            fail(f"--timezone: {exc}", EXIT_CONFIG)
        out["timezone"] = flags["timezone"]
    tz = out["timezone"]
    parsers: dict[str, Any] = {
        "run_at": lambda v: _when(v, "--run-at", tz),
        "every": _interval,
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
        fail("--type is required (1 to 100 characters)", EXIT_CONFIG)
    if not fields["kind"]:
        fail(f"--kind is required ({', '.join(KINDS)})", EXIT_CONFIG)
    if fields["user_id"] == "":
        fail("--user must not be empty", EXIT_CONFIG)
    if not -1000 <= fields["priority"] <= 1000:
        fail("--priority must be from -1000 to 1000", EXIT_CONFIG)
    if fields["timeout_seconds"] is not None and fields["timeout_seconds"] < 1:
        fail("--timeout-seconds must be at least 1", EXIT_CONFIG)
    if fields["max_retries"] is not None and not 0 <= fields["max_retries"] <= 1000:
        fail("--max-retries must be from 0 to 1000", EXIT_CONFIG)
    if fields["file_id"] is not None:
        try:
            fields["file_id"] = str(uuid.UUID(str(fields["file_id"])))
        except ValueError:
            fail(f"--file-id: not a UUID: {fields['file_id']!r}", EXIT_CONFIG)


def _validated(fields: dict[str, Any]) -> None:
    """Reject a definition that cannot work, before connecting."""
    try:
        validate(spec_from_row(fields))
    except ScheduleError as exc:
        fail(str(exc), EXIT_CONFIG)


def _plan(fields: dict[str, Any], enabled: bool, now: datetime, count: int) -> dict[str, Any]:
    """The row to write, with its next run; a definition that would never run is refused."""
    next_run = first_run(spec_from_row(fields), now, count) if enabled else None
    if enabled and next_run is None:
        fail(f"the schedule would never run: {_why_never(fields, now, count)}", EXIT_CONFIG)
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


# --- output --------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    # instants in UTC whatever the session's TimeZone, so that scripts compare them as strings
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(row, default=_json_default))  # type: ignore[no-any-return]


def _at(row: dict[str, Any], key: str) -> str:
    return "-" if row.get(key) is None else local(row[key], row["timezone"])


def _described(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    try:
        when = describe(spec_from_row(row))
    except ScheduleError as exc:
        when = f"invalid: {exc}"
    return {**row, "state": state_of(row, now), "when": when}


def _printable(row: dict[str, Any]) -> dict[str, Any]:
    """A row for the text views: every string escaped, but metadata (json.dumps escapes it itself)."""
    return {k: v if k == "metadata" else printable_data(v) for k, v in row.items()}


def _echo_show(row: dict[str, Any], executions: list[dict[str, Any]], tally: dict[str, int]) -> None:
    name = repr(row["name"])  # repr escapes control characters itself
    row = _printable(row)
    executions = [_printable(e) for e in executions]
    tally = printable_data(tally)
    job = f"{row['job_type']}  priority {row['priority']}"
    for key, label in (
        ("user_id", "user"),
        ("file_id", "file"),
        ("timeout_seconds", "timeout"),
        ("max_retries", "max retries"),
    ):
        if row[key] is not None:
            job += f"  {label} {row[key]}"
    limits = f"start {_at(row, 'start_at')}  end {_at(row, 'end_at')}  max executions {row['max_executions'] or '-'}"
    statuses = ", ".join(f"{k} {v}" for k, v in tally.items())
    lines = [
        f"schedule {row['id']} {name} ({row['state']})",
        f"  when         {row['when']}",
        f"  job          {job}",
        f"  metadata     {json.dumps(row['metadata'], sort_keys=True)}",
        f"  limits       {limits}",
        f"  runs         {row['execution_count']}" + (f"  ({statuses})" if statuses else ""),
        f"  last run     {_at(row, 'last_run_at')}",
        f"  next run     {_at(row, 'next_run_at')}",
    ]
    if row["business_description"]:
        lines.insert(3, f"  description  {row['business_description']}")
    echo("\n".join(lines))
    if not executions:
        echo("no executions yet")
        return
    echo(f"latest executions:\n  {'OCCURRENCE':26} {'FIRED BY':18} {'JOB':36}  STATUS")
    for e in executions:
        echo(
            f"  {local(e['occurrence_at'], row['timezone']):26} {(e['fired_by'] or '-')[:18]:18} "
            f"{e['job_id'] or '-'!s:36}  {e['job_status'] or 'pruned'}"
        )


# --- commands ------------------------------------------------------------------------------------------


def _schedule_or_exit(conn: Connection, key: str, lock: bool = False) -> dict[str, Any]:
    row = store.schedule_get(conn, key)
    if row is not None and lock:
        row = store.schedule_get_locked(conn, row["id"])
    if row is None:
        fail(f"no schedule {key!r}", EXIT_ERROR)
    return row


def _check_file(conn: Connection, fields: dict[str, Any]) -> None:
    if fields["file_id"] is not None and store.get_file(conn, fields["file_id"]) is None:
        fail(f"--file-id: no file {fields['file_id']}", EXIT_CONFIG)


@click.group("schedules")
def schedules_group() -> None:
    """One-time, recurring and cron schedules that enqueue jobs (every daemon fires them)."""


@schedules_group.command("add")
@click.argument("name")
@timing_options
@click.option("--paused", is_flag=True, help="Create it paused.")
@click.pass_obj
def add_cmd(state: CliState, /, name: str, paused: bool, **flags: Any) -> None:
    """Create a schedule; an invalid definition is refused before anything is written."""
    config = load_or_exit(state)
    if not name.strip() or name.isdigit() or len(name) > 200:
        fail("NAME must be 1 to 200 characters and not a number (numbers are schedule ids)", EXIT_CONFIG)
    fields = _fields_from_flags(flags, None)
    _validated(fields)
    with handled(config), open_db(config) as conn:
        row = _plan(fields, not paused, store.schedule_db_now(conn), 0)
        _check_file(conn, fields)
        try:
            schedule_id = store.schedule_insert(conn, {"name": name, **row})
        except psycopg.errors.UniqueViolation:
            fail(f"a schedule named {name!r} exists already", EXIT_ERROR)
    next_run = local(row["next_run_at"], fields["timezone"]) if row["next_run_at"] else "- (paused)"
    echo(f"schedule {schedule_id} {name!r} added: {describe(spec_from_row(fields))}; next run {next_run}")


@schedules_group.command("update")
@click.argument("key")
@timing_options
@click.pass_obj
def update_cmd(state: CliState, /, key: str, **flags: Any) -> None:
    """Change a schedule's job or timing (flags not given keep their value); paused stays paused."""
    config = load_or_exit(state)
    with handled(config), open_db(config) as conn, conn.transaction():
        current = _schedule_or_exit(conn, key, lock=True)
        fields = _fields_from_flags(flags, {k: current[k] for k in (*TEMPLATE_FIELDS, *TIMING_FIELDS)})
        _validated(fields)
        row = _plan(fields, current["enabled"], store.schedule_db_now(conn), current["execution_count"])
        _check_file(conn, fields)
        store.schedule_update(conn, current["id"], row)
    next_run = local(row["next_run_at"], fields["timezone"]) if row["next_run_at"] else "- (not enabled)"
    echo(f"schedule {current['id']} updated: {describe(spec_from_row(fields))}; next run {next_run}")


@schedules_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON array.")
@click.pass_obj
def list_cmd(state: CliState, as_json: bool) -> None:
    """Every schedule with its state, run count, latest job status and next run."""
    config = load_or_exit(state)
    with handled(config), open_db(config) as conn:
        now = store.schedule_db_now(conn)
        rows = [_described(r, now) for r in store.schedule_list(conn)]
    if as_json:
        click.echo(json.dumps([_jsonable(r) for r in rows], indent=2))
        return
    if not rows:
        echo("no schedules")
        return
    rows = [_printable(r) for r in rows]
    echo(f"{'ID':>4}  {'NAME':20} {'STATE':8} {'RUNS':>5}  {'LAST JOB':10} {'NEXT RUN':26} WHEN")
    for r in rows:
        echo(
            f"{r['id']:>4}  {r['name'][:20]:20} {r['state']:8} {r['execution_count']:>5}  "
            f"{r['last_job_status'] or '-':10} {_at(r, 'next_run_at'):26} {r['when']}"
        )


@schedules_group.command("show")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="JSON object.")
@click.option(
    "--limit", type=click.IntRange(1, 10000), default=20, show_default=True, help="Executions listed."
)
@click.pass_obj
def show_cmd(state: CliState, key: str, as_json: bool, limit: int) -> None:
    """One schedule: last and next run, count, and its latest executions with each job's status."""
    config = load_or_exit(state)
    with handled(config), open_db(config) as conn:
        row = _described(_schedule_or_exit(conn, key), store.schedule_db_now(conn))
        executions = store.schedule_executions(conn, row["id"], limit)
        tally = store.schedule_execution_tally(conn, row["id"])
    if as_json:
        data = {
            **_jsonable(row),
            "execution_statuses": tally,
            "executions": [_jsonable(e) for e in executions],
        }
        click.echo(json.dumps(data, indent=2))
        return
    _echo_show(row, executions, tally)


def _set_enabled(state: CliState, key: str, enabled: bool) -> None:
    config = load_or_exit(state)
    with handled(config), open_db(config) as conn, conn.transaction():
        row = _schedule_or_exit(conn, key, lock=True)
        next_run = None
        if enabled:
            now = store.schedule_db_now(conn)
            try:
                next_run = first_run(spec_from_row(row), now, row["execution_count"])
            except ScheduleError as exc:
                fail(f"schedule {row['id']} cannot be resumed: {exc}", EXIT_CONFIG)
            if next_run is None:
                fail(
                    f"schedule {row['id']} has no occurrence left "
                    f"({_why_never(row, now, row['execution_count'])}); change it with `schedules update`",
                    EXIT_ERROR,
                )
        store.schedule_set_enabled(conn, row["id"], enabled, next_run)
    if next_run is not None:
        echo(f"schedule {row['id']} {row['name']!r} resumed: next run {local(next_run, row['timezone'])}")
    else:
        echo(f"schedule {row['id']} {row['name']!r} paused")


@schedules_group.command("pause")
@click.argument("key")
@click.pass_obj
def pause_cmd(state: CliState, key: str) -> None:
    """Stop a schedule from firing (a job it already enqueued still runs)."""
    _set_enabled(state, key, False)


@schedules_group.command("resume")
@click.argument("key")
@click.pass_obj
def resume_cmd(state: CliState, key: str) -> None:
    """Fire a paused schedule again from its next occurrence (occurrences while paused are skipped)."""
    _set_enabled(state, key, True)


@schedules_group.command("remove")
@click.argument("key")
@click.pass_obj
def remove_cmd(state: CliState, key: str) -> None:
    """Delete a schedule and its execution records; the jobs it enqueued stay."""
    config = load_or_exit(state)
    with handled(config), open_db(config) as conn:
        row = _schedule_or_exit(conn, key)
        store.schedule_delete(conn, row["id"])
    echo(f"schedule {row['id']} {row['name']!r} removed")


@schedules_group.command("due")
@click.option("--json", "as_json", is_flag=True, help="JSON array.")
@click.pass_obj
def due_cmd(state: CliState, as_json: bool) -> None:
    """Enabled schedules whose next run has come (a running daemon fires them within a second)."""
    config = load_or_exit(state)
    with handled(config), open_db(config) as conn:
        rows = store.schedules_due(conn)
    if as_json:
        click.echo(json.dumps([_jsonable(r) for r in rows], indent=2))
        return
    if not rows:
        echo("no schedule is due")
        return
    rows = [_printable(r) for r in rows]
    echo(f"{'ID':>4}  {'NAME':20} {'TYPE':16} DUE SINCE")
    for r in rows:
        echo(f"{r['id']:>4}  {r['name'][:20]:20} {r['job_type'][:16]:16} {r['next_run_at'].isoformat()}")
