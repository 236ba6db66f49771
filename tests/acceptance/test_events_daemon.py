"""Completion events from a real `job_cron run`: jobcron.wait() knows within milliseconds, a rescue is an event."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import jobcron
from tests import workflows
from tests.acceptance.daemon import FAST, Daemon, write_config
from tests.factories import insert_job

pytestmark = pytest.mark.acceptance
Conn = psycopg.Connection[dict[str, Any]]


def start(daemons: list[Daemon], dsn: str, tmp_path: Path, name: str, **daemon: Any) -> Daemon:
    config = write_config(
        tmp_path / f"{name}.json",
        daemon={**FAST, **daemon},
        workflows=workflows.ALL,
        job_processing={"execution_mode": "inline"},
        retry={"in_process_attempts": 1, "durable_backoff_seconds": 60},
    )
    d = Daemon(dsn, config, "--worker-id", name)
    daemons.append(d)
    d.wait_event("worker_started")
    return d


def test_wait_returns_within_milliseconds_of_the_daemon_s_record(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    start(daemons, dsn, tmp_path, "events")
    time.sleep(0.5)  # its LISTEN connection comes up just after the start line
    lags = []
    for _ in range(10):
        job_id = jobcron.enqueue(conn, "with_insights")
        # the poll is out of the way: only the notification can make wait() return soon
        found = jobcron.wait(conn, job_id, timeout=10, poll_seconds=30, insights=True)
        row = conn.execute(
            "SELECT extract(epoch FROM clock_timestamp() - completed_at)::float8 AS lag "
            "FROM processing_jobs WHERE id = %s",
            (job_id,),
        ).fetchone()
        assert row is not None
        lags.append(row["lag"])
        assert found.status == "completed" and found.result == {"job": job_id}
        assert found.insights is not None and len(found.insights) == 2
    assert sorted(lags)[len(lags) // 2] < 0.1, lags


def test_a_failed_daemon_job_and_its_retry_as_a_listener_sees_them(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN jobcron_events")
        start(daemons, dsn, tmp_path, "fails")
        retried = jobcron.enqueue(conn, "boom", max_retries=1)
        with pytest.raises(TimeoutError):
            jobcron.wait(conn, retried, timeout=1.5, poll_seconds=0.2)  # pending again: not finished
        failed = jobcron.enqueue(conn, "permanent")
        assert jobcron.wait(conn, failed, timeout=10).status == "failed"
        got = [json.loads(n.payload) for n in listener.notifies(timeout=1)]
    events = [(e["id"], e["status"], e["attempt"]) for p in got for e in p["events"]]
    assert events == [(retried, "pending", 1), (failed, "failed", 1)]


def test_a_rescue_by_another_daemon_is_an_event(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    job_id = insert_job(conn, job_type="hang", max_retries=0)
    stuck = start(daemons, dsn, tmp_path, "stuck")
    stuck.wait_event("job_claimed", job_id=job_id)
    stuck.signal(signal.SIGKILL)
    stuck.wait_exit()
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN jobcron_events")
        start(daemons, dsn, tmp_path, "rescuer")
        found = jobcron.wait(conn, job_id, timeout=20)
        payloads = [json.loads(n.payload) for n in listener.notifies(timeout=1)]
    assert found.status == "failed" and "worker lost" in (found.error_message or "")
    assert [(e["id"], e["status"]) for p in payloads for e in p["events"]] == [(job_id, "failed")]
