"""`job_cron status | workers | pause | resume | health`: the operator's view of the queue and its daemons."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
import psycopg

from jobcron.admin import jobs as admin_jobs
from jobcron.admin import status as admin_status
from jobcron.cli.common import (
    EXIT_OK,
    CliState,
    db_error_text,
    duration_option,
    emit,
    handled,
    invalid_input_exits,
    load_or_exit,
    open_db,
    output,
)
from jobcron.cli.render import render_status, render_workers_table
from jobcron.config import Config
from jobcron.db import DB_UNAVAILABLE, WAITED_TOO_LONG, Connection, scrub, waited_message, waited_too_long
from jobcron.terminal import printable

CLEAR_SCREEN = "\033[H\033[2J"
# `health` answers within this long, whatever the database does (--timeout)
HEALTH_TIMEOUT_SECONDS = 10.0


def watch_loop(config: Config, interval: float, produce: Callable[[Connection], str], as_json: bool) -> None:
    """Refresh like `watch`: clear the screen on a terminal, keep going through database outages; Ctrl-C exits 0."""
    tty = sys.stdout.isatty() and not as_json
    conn: Connection | None = None
    wait = threading.Event()
    try:
        while True:
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = open_db(config, "status")
                text = produce(conn)
            except DB_UNAVAILABLE as exc:
                if conn is not None and not waited_too_long(exc):
                    conn.close()  # a statement that waited too long leaves a good connection behind
                    conn = None
                text = printable(db_error_text(exc, config))
            if tty:
                stamp = datetime.now(UTC).strftime("%H:%M:%S")
                click.echo(f"{CLEAR_SCREEN}Every {interval:g}s: job_cron status    {stamp}\n")
            output(text, as_json)
            sys.stdout.flush()
            wait.wait(interval)
    except KeyboardInterrupt:
        sys.exit(EXIT_OK)
    finally:
        if conn is not None:
            conn.close()


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (documented fields).")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.1),
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Refresh every SECONDS (default 2) until Ctrl-C.",
)
@click.option(
    "--exact", is_flag=True, help="Count finished jobs exactly even on a large table (a full scan)."
)
@click.option("--running-limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.pass_obj
def status_cmd(state: CliState, as_json: bool, watch: float | None, exact: bool, running_limit: int) -> None:
    """Counts, oldest pending job, running jobs, busiest users, workers, due schedules, failure rate."""
    config = load_or_exit(state)

    def produce(conn: Connection) -> str:
        st = admin_status.collect_status(conn, config, running_limit=running_limit, exact=exact or None)
        return json.dumps(st, sort_keys=True) if as_json else render_status(st)

    with handled(config):
        if watch is not None:
            watch_loop(config, watch, produce, as_json)
            return
        with open_db(config, "status") as conn:
            output(produce(conn), as_json)


@click.command("workers")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (documented fields).")
@click.pass_obj
def workers_cmd(state: CliState, as_json: bool) -> None:
    """Alive and dead daemons and the job each one runs."""
    config = load_or_exit(state)
    with handled(config), open_db(config, "workers") as conn:
        data = admin_status.collect_workers(conn, config)

    def render(d: dict[str, Any]) -> str:
        head = f"{d['alive']} alive, {d['dead']} dead (dead = not seen for {d['dead_after_seconds']:g}s)"
        return head + ("\n" + render_workers_table(d["workers"]) if d["workers"] else "")

    emit(data, as_json, render)


def _pause_text(d: dict[str, Any]) -> str:
    paused = [printable(p["job_type"]) for p in d["paused"]]
    names = ", ".join("all job types" if t == "*" else t for t in paused)
    return f"paused now: {names}" if paused else "nothing is paused: every daemon claims jobs"


@click.command("pause")
@click.option("--type", "job_type", default=None, help="Pause one job type only (default: all).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def pause_cmd(state: CliState, job_type: str | None, as_json: bool) -> None:
    """Stop claiming on every daemon (within about a second); running jobs finish."""
    config = load_or_exit(state)
    with handled(config), invalid_input_exits(), open_db(config, "pause") as conn:
        data = admin_jobs.pause(conn, job_type)
    what = "all job types" if data["job_type"] == "*" else f"job type {printable(data['job_type'])}"
    emit(
        data,
        as_json,
        lambda d: f"{'paused' if d['changed'] else 'already paused'}: {what}\n{_pause_text(d)}",
    )


@click.command("resume")
@click.option(
    "--type", "job_type", default=None, help="Resume one job type (default: lift the global pause)."
)
@click.option("--all", "everything", is_flag=True, help="Lift every pause, global and per type.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def resume_cmd(state: CliState, job_type: str | None, everything: bool, as_json: bool) -> None:
    """Start claiming again on every daemon."""
    config = load_or_exit(state)
    with handled(config), invalid_input_exits(), open_db(config, "resume") as conn:
        data = admin_jobs.resume(conn, job_type, everything=everything)

    def render(d: dict[str, Any]) -> str:
        lifted = ", ".join("all job types" if t == "*" else printable(t) for t in d["lifted"])
        return (f"resumed: {lifted}" if lifted else "nothing to resume") + "\n" + _pause_text(d)

    emit(data, as_json, render)


class ProbeTimedOut(Exception):
    """The probe did not finish within its budget."""


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """fn's result, or ProbeTimedOut once seconds have passed, whatever fn waits for.

    The server's timeouts end a statement that waits for a lock or runs too long, but not a
    connection whose server has stopped answering at all (a network partition, a frozen host): fn
    runs in a thread of its own, and a probe that must not hang leaves it behind.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed to the caller as it is
            box["error"] = exc

    worker = threading.Thread(target=run, name="jobcron-probe", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise ProbeTimedOut
    if "error" in box:
        raise box["error"]
    return box["result"]


@click.command("health")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: status, exit_code, checks.")
@click.option(
    "--min-workers", type=click.IntRange(0), default=1, show_default=True, help="Live daemons needed."
)
@click.option(
    "--max-pending-age", default="10m", show_default=True, help="Oldest due job waits longer: degraded."
)
@click.option(
    "--critical-pending-age", default="1h", show_default=True, help="Oldest due job waits longer: unhealthy."
)
@click.option(
    "--max-failure-rate",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Failed share of jobs finished in the last hour above this: degraded.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=3600),
    default=HEALTH_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds the whole probe may take; a database slower than that is unhealthy.",
)
@click.pass_obj
def health_cmd(
    state: CliState,
    as_json: bool,
    min_workers: int,
    max_pending_age: str,
    critical_pending_age: str,
    max_failure_rate: float,
    timeout: float,
) -> None:
    """Exit 0 healthy, 1 degraded, 2 unhealthy (for systemd, cron and monitoring agents)."""
    config = load_or_exit(state)
    limits = admin_status.HealthThresholds(
        min_workers=min_workers,
        max_pending_age_seconds=duration_option(max_pending_age, "--max-pending-age"),
        critical_pending_age_seconds=duration_option(critical_pending_age, "--critical-pending-age"),
        max_failure_rate=max_failure_rate,
    )

    def probe() -> dict[str, Any]:
        # the server gives up on any statement past the budget too, so no backend outlives the probe
        with open_db(config, "health", statement_timeout_seconds=timeout) as conn:
            return admin_status.collect_health(conn, config, limits)

    try:
        report = within(timeout, probe)
    except ProbeTimedOut:
        report = admin_status.did_not_answer(f"database did not answer within {timeout:g}s")
    except WAITED_TOO_LONG as exc:
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            report = admin_status.did_not_answer(waited_message(exc, config))
        else:  # the statement timeout: the budget ran out on the server's side
            report = admin_status.did_not_answer(f"database did not answer within {timeout:g}s")
    except DB_UNAVAILABLE as exc:
        report = admin_status.unreachable(scrub(str(exc).strip(), config.database.url))
    except (
        Exception
    ) as exc:  # a missing URL, broken ledger or failing query is unhealthy too, not a traceback
        message = scrub(str(exc).strip(), config.database.url)
        report = {
            "status": admin_status.UNHEALTHY,
            "exit_code": 2,
            "checks": [{"name": "database", "status": admin_status.UNHEALTHY, "detail": message}],
        }

    def render(r: dict[str, Any]) -> str:
        lines = [r["status"]]
        lines += [f"  {c['status']:<10} {c['name']:<15} {printable(c['detail'])}" for c in r["checks"]]
        return "\n".join(lines)

    emit(report, as_json, render)
    sys.exit(report["exit_code"])
