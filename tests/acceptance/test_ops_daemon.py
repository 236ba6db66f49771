"""Operator commands against real `job_cron run` processes: cancel (plain, forced, without LISTEN), pause and
resume, and the Prometheus endpoint."""

from __future__ import annotations

import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import workflows
from tests.acceptance.daemon import Daemon, write_config
from tests.factories import insert_job, job
from tests.ops_cli import run, run_json

pytestmark = pytest.mark.acceptance
Conn = psycopg.Connection[dict[str, Any]]
# a grace far longer than the test waits: a job that ends early was stopped by the cancel itself
GRACE = 30


def start(daemons: list[Daemon], dsn: str, tmp_path: Path, name: str, *args: str, **sections: Any) -> Daemon:
    config = write_config(tmp_path / f"{name}.json", workflows=workflows.ALL, **sections)
    d = Daemon(dsn, config, "--worker-id", name, *args)
    daemons.append(d)
    d.wait_event("worker_started", timeout=30)
    return d


def cancel_and_time(dsn: str, d: Daemon, conn: Conn, job_type: str, *flags: str) -> float:
    job_id = insert_job(conn, job_type=job_type, metadata={"seconds": 60})
    d.wait_event("job_claimed", job_id=job_id, timeout=30)
    t0 = time.monotonic()
    out = run_json(dsn, "jobs", "cancel", job_id, "--wait", "20", *flags)
    took = time.monotonic() - t0
    assert out["status"] == "cancelled", out
    row = job(conn, job_id)
    assert row["status"] == "cancelled" and row["completed_at"] is not None
    print(f"cancel {job_type} {' '.join(flags) or 'plain'}: {took:.2f}s", file=sys.stderr)
    return took


def test_cancel_of_running_jobs_plain_and_forced(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    d = start(
        daemons,
        dsn,
        tmp_path,
        "ops-cancel",
        job_processing={"execution_mode": "process"},
        daemon={"cancel_grace_seconds": GRACE, "heartbeat_interval_seconds": 0.5},
    )
    # sleep honours the cancel itself; hang ignores it, so only --force can end it before the grace
    assert cancel_and_time(dsn, d, conn, "sleep") < GRACE / 3
    assert cancel_and_time(dsn, d, conn, "sleep", "--force") < GRACE / 3
    assert cancel_and_time(dsn, d, conn, "hang", "--force") < GRACE / 3


def test_forced_cancel_reaches_a_daemon_that_does_not_listen(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    d = start(
        daemons,
        dsn,
        tmp_path,
        "ops-poll",
        "--no-listen",
        job_processing={"execution_mode": "process"},
        daemon={"cancel_grace_seconds": GRACE, "heartbeat_interval_seconds": 0.5, "interval_seconds": 0.2},
    )
    # no NOTIFY reaches this daemon: "force" travels in the row and comes back with the heartbeat
    assert cancel_and_time(dsn, d, conn, "hang", "--force") < GRACE / 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def test_pause_stops_claiming_and_resume_restarts_with_metrics(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    d = start(
        daemons,
        dsn,
        tmp_path,
        "ops-pause",
        "--metrics-port",
        str(port),
        job_processing={"execution_mode": "inline"},
    )
    first = insert_job(conn, job_type="noop")
    d.wait_event("job_completed", job_id=first)
    assert run_json(dsn, "pause")["changed"] is True
    # one second after `pause` the daemon must have stopped claiming (it refreshes pauses at once on
    # NOTIFY, and every second without one); the job then has to stay pending
    time.sleep(1.0)
    held = insert_job(conn, job_type="noop")
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert job(conn, held)["status"] == "pending", "a paused daemon claimed a job"
        time.sleep(0.1)
    t0 = time.monotonic()
    run_json(dsn, "resume")
    d.wait_event("job_completed", job_id=held)
    print(f"claimed {time.monotonic() - t0:.2f}s after resume", file=sys.stderr)

    failed = insert_job(conn, job_type="boom", max_retries=0)
    d.wait_event("job_failed", job_id=failed)
    text = scrape(port)
    assert 'jobcron_jobs_claimed_total{job_type="noop"} 2.0' in text
    assert 'jobcron_jobs_completed_total{job_type="noop"} 2.0' in text
    assert 'jobcron_jobs_failed_total{job_type="boom"} 1.0' in text
    assert 'jobcron_job_duration_seconds_count{job_type="noop"} 2.0' in text
    assert 'jobcron_queue_depth{state="pending_due"}' in text
    assert 'jobcron_queue_depth{state="waiting"} 0.0' in text
    assert "jobcron_oldest_pending_age_seconds" in text


def test_metrics_port_without_prometheus_client_exits_2(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "jobcron.daemon.metrics", raising=False)
    result = run(dsn, "run", "--once", "--metrics-port", "9999")
    assert result.exit_code == 2
    assert result.stderr == (
        "job_cron: error: --metrics-port needs the prometheus-client package: pip install 'jobcron[metrics]'\n"
    )
