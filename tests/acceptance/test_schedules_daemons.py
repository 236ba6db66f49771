"""Two real `job_cron run` daemons fire frequent schedules: exactly one job per occurrence."""

from __future__ import annotations

import signal
import time
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobcron import store
from jobcron.schedules.firing import first_run
from jobcron.schedules.rules import ScheduleSpec, latest_due
from tests.acceptance.daemon import Daemon, write_config
from tests.integration.test_schedules import add

pytestmark = pytest.mark.acceptance
Conn = psycopg.Connection[dict[str, Any]]


def wait_until(predicate: Any, daemons: list[Daemon], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            logs = "".join(line for d in daemons for line in d.raw[-20:])
            raise AssertionError(f"condition not met in {timeout}s; daemon logs:\n{logs}")
        time.sleep(0.1)


def scalar(conn: Conn, query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return next(iter(row.values()))


def test_two_daemons_fire_each_occurrence_of_a_frequent_schedule_once(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    db_now = store.schedule_db_now(conn).astimezone(UTC)
    # missed while every daemon was down: a daily run whose last due slot passed hours ago
    daily = ScheduleSpec(
        kind="daily", time_of_day=(db_now - timedelta(hours=2)).time().replace(microsecond=0)
    )
    missed = add(conn, "missed-daily", daily, now=db_now - timedelta(days=3))
    expected_catch_up = latest_due(daily, db_now)

    config = write_config(
        tmp_path / "d.json",
        daemon={"schedule_check_seconds": 0.2, "worker_heartbeat_seconds": 0.5},
        job_processing={"execution_mode": "inline"},
    )
    for name in ("a", "b"):
        daemons.append(Daemon(dsn, config, "--worker-id", name))
    for d in daemons:
        d.wait_event("worker_started")

    start = store.schedule_db_now(conn).replace(microsecond=0) + timedelta(seconds=2)
    every_second = ScheduleSpec(kind="interval", interval_seconds=1, start_at=start, max_executions=5)
    # no cap on this one: its window holds five occurrences, and either daemon may fire each of them
    cron_seconds = ScheduleSpec(
        kind="cron", cron_expression="* * * * * *", start_at=start, end_at=start + timedelta(seconds=4)
    )
    ids = [
        add(conn, "every-second", every_second, now=start),
        add(conn, "cron-seconds", cron_seconds, now=start),
    ]
    assert first_run(every_second, start) == start

    # each schedule disables itself after its fifth run (max executions; end of its window)
    enabled = "SELECT count(*) FROM job_schedules WHERE enabled AND id = ANY(%s)"
    wait_until(lambda: scalar(conn, enabled, ids) == 0, daemons)
    unfinished = "SELECT count(*) FROM processing_jobs WHERE status <> 'completed'"
    wait_until(lambda: scalar(conn, unfinished) == 0, daemons)

    for sid in ids:
        rows = conn.execute(
            "SELECT e.occurrence_at, e.job_id, j.status FROM schedule_executions e "
            "JOIN processing_jobs j ON j.id = e.job_id WHERE e.schedule_id = %s ORDER BY 1",
            (sid,),
        ).fetchall()
        assert len(rows) == 5 and all(r["status"] == "completed" for r in rows)
        assert len({r["occurrence_at"] for r in rows}) == 5
        assert [r["occurrence_at"] for r in rows] == [start + timedelta(seconds=i) for i in range(5)]
        assert scalar(conn, "SELECT count(*) FROM processing_jobs WHERE schedule_id = %s", sid) == 5

    # the daily run missed during the downtime ran once, for its latest slot, on start-up
    [caught_up] = conn.execute(
        "SELECT occurrence_at FROM schedule_executions WHERE schedule_id = %s", (missed,)
    ).fetchall()
    assert caught_up["occurrence_at"] == expected_catch_up
    assert scalar(conn, "SELECT count(*) FROM processing_jobs WHERE schedule_id = %s", missed) == 1

    fired = [line for d in daemons for line in d.events("schedule_fired")]
    assert len(fired) == 11 and len({line["job_id"] for line in fired}) == 11
    total = scalar(conn, "SELECT count(*) FROM processing_jobs")
    assert total == 11
    for d in daemons:
        d.signal(signal.SIGTERM)
        assert d.wait_exit() == 0


def test_a_schedule_inserted_with_plain_sql_fires_within_one_check(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    config = write_config(tmp_path / "d.json", daemon={"schedule_check_seconds": 1})
    daemons.append(Daemon(dsn, config, "--worker-id", "plain-sql"))
    daemons[0].wait_event("worker_started")
    began = time.monotonic()
    conn.execute(
        "INSERT INTO job_schedules (name, job_type, kind, interval_seconds) VALUES ('app-made', 'noop', 'interval', 2)"
    )
    planned = daemons[0].wait_event("schedule_planned", timeout=10, schedule="app-made")
    fired = daemons[0].wait_event("schedule_fired", timeout=10, schedule="app-made")
    first = time.monotonic() - began
    assert planned["occurrence_at"] == fired["occurrence_at"]  # its first run is the moment it was planned
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM processing_jobs WHERE status = 'completed'") >= 2, daemons
    )
    assert first < 10, f"first firing {first:.2f} s after the INSERT"  # before 0005 it never fired at all
    print(f"plain-SQL schedule: INSERT -> first firing {first:.2f} s (schedule_check_seconds 1)")
    daemons[0].signal(signal.SIGTERM)
    assert daemons[0].wait_exit() == 0
