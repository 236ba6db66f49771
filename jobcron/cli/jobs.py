"""`job_cron jobs list|show|cancel|retry|reset-stale|purge` and `job_cron enqueue` (one job or bulk)."""

from __future__ import annotations

import math
import sys
import time
from datetime import timedelta
from typing import Any, TextIO

import click

from jobcron import bulk, client, store
from jobcron.admin import jobs as admin_jobs
from jobcron.cli.common import (
    EXIT_CONFIG,
    EXIT_ERROR,
    CliState,
    duration_option,
    emit,
    fail,
    handled,
    invalid_input_exits,
    load_or_exit,
    open_db,
)
from jobcron.cli.render import echo, redact, render_job, render_jobs
from jobcron.db import Connection
from jobcron.durations import format_duration, parse_duration, parse_instant, parse_since
from jobcron.errors import BulkInputError, InvalidInput, JsonRefused, UnknownParent, UnknownReference
from jobcron.jsontext import parse_json
from jobcron.terminal import printable_data

STATUS_CHOICE = click.Choice(admin_jobs.STATUSES)


def _job_id(value: str) -> str:
    try:
        return admin_jobs.job_id_arg(value)
    except InvalidInput as exc:
        fail(str(exc), EXIT_CONFIG)


@click.group("jobs")
def jobs_group() -> None:
    """List, inspect, cancel, retry, reset and purge jobs."""


@jobs_group.command("list")
@click.option("--status", "statuses", type=STATUS_CHOICE, multiple=True, help="Repeatable.")
@click.option("--user", "user_id", default=None)
@click.option("--type", "job_type", default=None)
@click.option("--since", default=None, help="Created since: a duration ago (1h, 2d) or an ISO date-time.")
@click.option("--limit", type=click.IntRange(1, admin_jobs.MAX_LIST), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON array of jobs.")
@click.pass_obj
def list_cmd(
    state: CliState,
    statuses: tuple[str, ...],
    user_id: str | None,
    job_type: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Jobs, newest first."""
    config = load_or_exit(state)
    with invalid_input_exits():
        since_at, since_seconds = parse_since(since) if since else (None, None)
    with handled(config), invalid_input_exits(), open_db(config, "jobs") as conn:
        jobs = admin_jobs.list_jobs(
            conn,
            statuses=statuses,
            user_id=user_id,
            job_type=job_type,
            since=since_at,
            since_seconds=since_seconds,
            limit=limit,
        )
    emit(jobs, as_json, lambda js: render_jobs(js) if js else "no jobs match")


@jobs_group.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="The whole job as one JSON object.")
@click.option("--show-secrets", is_flag=True, help="Do not hide metadata values of keys like token/password.")
@click.option(
    "--max-bytes",
    type=click.IntRange(1, 2**31 - 1),
    default=admin_jobs.SHOW_MAX_BYTES,
    show_default=True,
    help="Show metadata, result and history only up to this size each (as JSON text).",
)
@click.pass_obj
def show_cmd(state: CliState, job_id: str, as_json: bool, show_secrets: bool, max_bytes: int) -> None:
    """Everything about one job: fields, metadata, result, error history, file, insights."""
    config = load_or_exit(state)
    jid = _job_id(job_id)
    with handled(config), open_db(config, "jobs") as conn:
        job = admin_jobs.show_job(conn, jid, max_bytes=max_bytes)
    if not show_secrets:
        job["metadata"] = redact(job["metadata"])
    emit(job, as_json, render_job)


@jobs_group.command("cancel")
@click.argument("job_id")
@click.option("--force", is_flag=True, help="Terminate a running job at once (process mode), no grace.")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=0,
    help="Wait up to SECONDS for a running job to end.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def cancel_cmd(state: CliState, job_id: str, force: bool, wait_seconds: float, as_json: bool) -> None:
    """Cancel a job: a pending one at once, a running one via its daemon (graceful, or --force)."""
    config = load_or_exit(state)
    jid = _job_id(job_id)
    with handled(config), open_db(config, "jobs") as conn:
        data = admin_jobs.cancel_job(conn, jid, force=force, wait_seconds=wait_seconds)

    def render(d: dict[str, Any]) -> str:
        d = printable_data(d)
        if d["action"] == "already_cancelled":
            return f"job {d['id']} was already cancelled"
        if d["action"] == "cancelled":
            return f"job {d['id']} cancelled"
        how = "forced cancel" if force else "cancel"
        text = f"job {d['id']} is running on {d['worker']}: {how} requested"
        if wait_seconds:
            text += f"; status now {d['status']}"
        elif not force:
            text += f" (terminated after daemon.cancel_grace_seconds, {config.daemon.cancel_grace_seconds:g}s here)"
        return text

    emit(data, as_json, render)
    if wait_seconds and data["status"] == "processing":
        sys.exit(EXIT_ERROR)


@jobs_group.command("retry")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def retry_cmd(state: CliState, job_id: str, as_json: bool) -> None:
    """Put a failed or cancelled job back to pending now (retry_count 0; attempts and history kept)."""
    config = load_or_exit(state)
    jid = _job_id(job_id)
    with handled(config), open_db(config, "jobs") as conn:
        data = admin_jobs.retry_job(conn, jid)
    emit(
        data,
        as_json,
        lambda d: (
            f"job {d['id']} is pending again (was {d['was']}, retry_count {d['retry_count_was']} -> 0, "
            f"{d['attempts']} attempt(s) so far)"
        ),
    )


@jobs_group.command("reset-stale")
@click.option("--older-than", default=None, help="Only jobs started longer ago than this duration.")
@click.option(
    "--include-alive",
    is_flag=True,
    help="Also take jobs whose daemon still heartbeats (needs --older-than).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be reset; change nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def reset_stale_cmd(
    state: CliState, older_than: str | None, include_alive: bool, dry_run: bool, as_json: bool
) -> None:
    """Put stuck running jobs back (an attempt each) when their daemon stopped heartbeating."""
    config = load_or_exit(state)
    seconds = duration_option(older_than, "--older-than") if older_than else None
    with handled(config), invalid_input_exits(), open_db(config, "jobs") as conn:
        data = admin_jobs.reset_stale(
            conn, config, older_than_seconds=seconds, include_alive=include_alive, dry_run=dry_run
        )

    def render(d: dict[str, Any]) -> str:
        d = printable_data(d)
        verb = "would reset" if d["dry_run"] else "reset"
        head = f"{verb} {len(d['jobs'])} job(s) (stale = no heartbeat for {d['stale_after_seconds']:g}s)"
        lines = [head]
        for j in d["jobs"]:
            where = "alive" if j.get("alive") else "stale"
            now = f" -> {j['status']}" if "status" in j else ""
            lines.append(f"  {j['id']} {j['job_type']} on {j['worker']} ({where}){now}")
        return "\n".join(lines)

    emit(data, as_json, render)


@jobs_group.command("purge")
@click.option(
    "--older-than", required=True, help="Delete jobs that finished longer ago than this (e.g. 30d)."
)
@click.option(
    "--status",
    "statuses",
    type=click.Choice(admin_jobs.FINISHED),
    multiple=True,
    help="Repeatable; default: completed, failed and cancelled.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; change nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def purge_cmd(
    state: CliState, older_than: str, statuses: tuple[str, ...], dry_run: bool, as_json: bool
) -> None:
    """Delete old finished jobs in short batches (insights stay; their job_id becomes NULL)."""
    config = load_or_exit(state)
    seconds = duration_option(older_than, "--older-than")
    with handled(config), invalid_input_exits(), open_db(config, "jobs") as conn:
        data = admin_jobs.purge(conn, older_than_seconds=seconds, statuses=statuses, dry_run=dry_run)
    emit(
        data,
        as_json,
        lambda d: (
            f"{'would delete' if d['dry_run'] else 'deleted'} {d['jobs']:,} {'/'.join(d['statuses'])} "
            f"job(s) finished more than {format_duration(seconds)} ago"
        ),
    )


# --- enqueue -------------------------------------------------------------------------------------------


def _run_at(conn: Connection, text: str) -> Any:
    """An ISO date-time, or a delay ("10m", "+10m", "in 10m") from the database clock."""
    raw = text.strip()
    if raw[:4].isdigit() and raw[4:5] == "-":
        return parse_instant(raw, "--run-at")
    delay = parse_duration(raw.removeprefix("+").removeprefix("in ").strip(), "--run-at")
    return store.ops_clock(conn) + timedelta(seconds=delay)


def _metadata(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return parse_json(text)
    except JsonRefused as exc:
        raise InvalidInput(f"--metadata: invalid JSON: {exc}") from None


@click.command("enqueue")
@click.option(
    "--type", "job_type", default=None, help="Job type (required for one job; a default for --bulk)."
)
@click.option("--user", "user_id", default=None)
@click.option("--file", "file_path", default=None, help="Register a files row for PATH and attach it.")
@click.option("--file-id", default=None, help="Attach an existing files row.")
@click.option(
    "--priority", type=int, default=None, help="-1000..1000, higher runs first (queue_priority: priority)."
)
@click.option("--run-at", default=None, help="ISO date-time, or a delay such as 10m.")
@click.option("--metadata", default=None, help="A JSON object of job parameters.")
@click.option("--dedup-key", default=None, help="Skip when a job with this key is pending or running.")
@click.option("--max-retries", type=int, default=None)
@click.option("--timeout", default=None, help="Hard timeout of the job: seconds or a duration (30m).")
@click.option("--description", "business_description", default=None)
@click.option(
    "--after",
    "depends_on",
    multiple=True,
    metavar="JOB_ID",
    help="Run only after this job completes (repeatable); waits as 'waiting' until then.",
)
@click.option(
    "--run-anyway",
    is_flag=True,
    default=None,
    help="With --after: run even if a parent fails or is cancelled (else this job is cancelled too).",
)
@click.option("--bulk", "bulk_path", default=None, help="Enqueue every line of FILE ('-' = stdin).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(bulk.FORMATS),
    default=None,
    help="Bulk format (default: by extension).",
)
@click.option(
    "--skip-bad", is_flag=True, help="Bulk: leave bad lines out (reported) instead of enqueuing nothing."
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def enqueue_cmd(
    state: CliState, /, bulk_path: str | None, fmt: str | None, skip_bad: bool, as_json: bool, **flags: Any
) -> None:
    """Enqueue one job from flags, or many from JSON lines / CSV with --bulk (COPY, all or nothing)."""
    config = load_or_exit(state)
    max_bytes = config.job_processing.max_metadata_bytes
    with handled(config), invalid_input_exits():
        fields = _fields(flags)
        with open_db(config, "enqueue") as conn:
            if "run_at" in fields:
                fields["run_at"] = _run_at(conn, fields["run_at"])
            if bulk_path is None:
                if "job_type" not in fields:
                    raise InvalidInput("--type: missing (or give --bulk FILE)")
                try:
                    job_id, created = client.enqueue_one(conn, fields, max_metadata_bytes=max_bytes)
                except UnknownParent as exc:
                    raise InvalidInput(f"--after: {exc}") from None
                except UnknownReference as exc:
                    # bad input, not a database failure: the id names a row that does not exist
                    column = "file_id" if exc.constraint == "processing_jobs_file_id_fkey" else "a reference"
                    raise InvalidInput(
                        f"--file-id: no files row with id {fields.get('file_id')!r} ({column})"
                    ) from None
                emit(
                    {"id": job_id, "created": created},
                    as_json,
                    lambda d: (
                        f"enqueued {d['id']}"
                        if d["created"]
                        else f"not enqueued: job {d['id']} with dedup_key {fields['dedup_key']!r} is pending or running"
                    ),
                )
                return
            for flag, key in (
                ("--file", "file_path"),
                ("--dedup-key", "dedup_key"),
                ("--file-id", "file_id"),
            ):
                if key in fields:
                    raise InvalidInput(f"{flag}: give it per line in the bulk input, not as a flag")
            _bulk(conn, bulk_path, fmt, fields, skip_bad, max_bytes, as_json)


def _fields(flags: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in flags.items() if v is not None and v != ()}
    if "depends_on" in fields:
        fields["depends_on"] = list(fields["depends_on"])
    if "metadata" in fields:
        fields["metadata"] = _metadata(fields["metadata"])
    if "timeout" in fields:
        fields["timeout_seconds"] = max(1, math.ceil(parse_duration(fields.pop("timeout"), "--timeout")))
    return fields


def _bulk(
    conn: Connection,
    path: str,
    fmt: str | None,
    defaults: dict[str, Any],
    skip_bad: bool,
    max_bytes: int,
    as_json: bool,
) -> None:
    began = time.perf_counter()
    source: TextIO
    if path == "-":
        source = sys.stdin
    else:
        try:
            source = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InvalidInput(f"--bulk: cannot read {path}: {exc.strerror}") from None
    try:
        result = bulk.enqueue_bulk(
            conn,
            source,
            bulk.format_for(path, fmt),
            defaults=defaults,
            skip_bad=skip_bad,
            max_metadata_bytes=max_bytes,
        )
    except BulkInputError as exc:
        echo(f"job_cron: error: {exc}", err=True)
        for number, problem in exc.bad[1:]:
            echo(f"job_cron:   line {number}: {problem}", err=True)
        sys.exit(EXIT_CONFIG)
    finally:
        if source is not sys.stdin:
            source.close()
    seconds = time.perf_counter() - began
    for number, problem in result.bad:
        echo(f"job_cron: skipped line {number}: {problem}", err=True)
    data = {
        "inserted": result.inserted,
        "lines": result.lines,
        "duplicates": result.duplicates,
        "skipped": [{"line": n, "error": p} for n, p in result.bad],
        "seconds": round(seconds, 3),
        "rate_per_second": round(result.inserted / seconds) if seconds > 0 else None,
    }
    emit(
        data,
        as_json,
        lambda d: (
            f"enqueued {d['inserted']:,} job(s) from {d['lines']:,} line(s) in {d['seconds']:.2f}s"
            + (f", {d['duplicates']:,} duplicate dedup_key(s) skipped" if d["duplicates"] else "")
            + (f", {len(d['skipped'])} bad line(s) skipped" if d["skipped"] else "")
        ),
    )
