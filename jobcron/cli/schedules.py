"""`job_cron schedules ...`: add, list, show, update, pause, resume, remove, due.

The rules live in jobcron.schedules.manage; here are the options, the output, and the exit codes of
manage's refusals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from typing import Any

import click

from jobcron.cli.common import EXIT_CONFIG, EXIT_ERROR, CliState, fail, handled, load_or_exit, open_db
from jobcron.cli.render import echo
from jobcron.errors import InvalidInput, ScheduleFinished, ScheduleNameTaken, ScheduleNotFound
from jobcron.schedules import manage
from jobcron.schedules.manage import CLEAR
from jobcron.schedules.rules import KINDS, local
from jobcron.terminal import printable_data


@contextmanager
def refusals() -> Iterator[None]:
    """manage's refusals as exit codes: a definition that cannot work 2; no such schedule, a name
    taken, nothing left to resume 1."""
    try:
        yield
    except InvalidInput as exc:
        fail(str(exc), EXIT_CONFIG)
    except (ScheduleNotFound, ScheduleNameTaken, ScheduleFinished) as exc:
        fail(str(exc), EXIT_ERROR)


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
    with refusals():
        fields = manage.new_definition(name, flags)
    with handled(config), refusals(), open_db(config) as conn:
        saved = manage.add(conn, name, fields, paused=paused)
    next_run = local(saved.next_run_at, fields["timezone"]) if saved.next_run_at else "- (paused)"
    echo(f"schedule {saved.schedule_id} {name!r} added: {saved.description}; next run {next_run}")


@schedules_group.command("update")
@click.argument("key")
@timing_options
@click.pass_obj
def update_cmd(state: CliState, /, key: str, **flags: Any) -> None:
    """Change a schedule's job or timing (flags not given keep their value); paused stays paused."""
    config = load_or_exit(state)
    with handled(config), refusals(), open_db(config) as conn:
        saved = manage.update(conn, key, flags)
    next_run = local(saved.next_run_at, saved.fields["timezone"]) if saved.next_run_at else "- (not enabled)"
    echo(f"schedule {saved.schedule_id} updated: {saved.description}; next run {next_run}")


@schedules_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON array.")
@click.pass_obj
def list_cmd(state: CliState, as_json: bool) -> None:
    """Every schedule with its state, run count, latest job status and next run."""
    config = load_or_exit(state)
    with handled(config), open_db(config) as conn:
        rows = manage.list_all(conn)
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
    with handled(config), refusals(), open_db(config) as conn:
        row, executions, tally = manage.show(conn, key, limit)
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
    with handled(config), refusals(), open_db(config) as conn:
        row, next_run = manage.set_enabled(conn, key, enabled)
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
    with handled(config), refusals(), open_db(config) as conn:
        row = manage.remove(conn, key)
    echo(f"schedule {row['id']} {row['name']!r} removed")


@schedules_group.command("due")
@click.option("--json", "as_json", is_flag=True, help="JSON array.")
@click.pass_obj
def due_cmd(state: CliState, as_json: bool) -> None:
    """Enabled schedules whose next run has come (a running daemon fires them within a second)."""
    config = load_or_exit(state)
    with handled(config), open_db(config) as conn:
        rows = manage.due(conn)
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
