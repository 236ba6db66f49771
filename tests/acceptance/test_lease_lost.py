"""A running job whose lease goes while it runs (an operator's blind reset), with real daemons and job
processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import workflows
from tests.acceptance.daemon import Daemon, write_config
from tests.factories import insert_job, job

pytestmark = pytest.mark.acceptance

Conn = psycopg.Connection[dict[str, Any]]
# seed 003's emergency SQL, as an operator pastes it into psql
BLIND_RESET = "UPDATE processing_jobs SET status = 'pending', started_at = NULL WHERE status = 'processing'"
HEARTBEAT = 0.2


def runs(log: Path) -> list[tuple[int, float]]:
    """(pid, epoch) of each start line the `slow` workflow wrote."""
    if not log.exists():
        return []
    return [(int(p[2]), float(p[3])) for p in (line.split() for line in log.read_text().splitlines())]


def wait_for_runs(log: Path, n: int, timeout: float = 30) -> list[tuple[int, float]]:
    deadline = time.monotonic() + timeout
    while len(found := runs(log)) < n:
        assert time.monotonic() < deadline, f"{len(found)} run(s) started, wanted {n}"
        time.sleep(0.02)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_blind_reset_terminates_the_first_run_at_once(
    dsn: str, conn: Conn, tmp_path: Path, daemons: list[Daemon]
) -> None:
    log = tmp_path / "runs.log"
    config = write_config(
        tmp_path / "c.json",
        workflows=workflows.ALL,
        # a cancel waits 30 s for the job to stop by itself: a lost lease must not
        daemon={"heartbeat_interval_seconds": HEARTBEAT, "cancel_grace_seconds": 30, "interval_seconds": 0.1},
        job_processing={"execution_mode": "process"},
    )
    first = Daemon(dsn, config, "--worker-id", "first")
    daemons.append(first)
    first.wait_event("worker_started", timeout=30)
    job_id = insert_job(conn, job_type="slow", metadata={"seconds": 4, "log": str(log)})
    [(first_pid, _)] = wait_for_runs(log, 1)
    second = Daemon(dsn, config, "--worker-id", "second")
    daemons.append(second)
    second.wait_event("worker_started", timeout=30)

    conn.execute(BLIND_RESET)
    reset_epoch = time.time()
    while alive(first_pid):
        # a heartbeat finds the lease gone and the job process is terminated at once
        assert time.time() - reset_epoch < HEARTBEAT + 1.5, "the first run goes on after its lease is gone"
        time.sleep(0.01)
    ended_epoch = time.time()
    first.wait_event("lease_lost", where="heartbeat", timeout=5)
    second.wait_event("job_completed", job_id=job_id, timeout=30)

    (_, _), (second_pid, second_start) = wait_for_runs(log, 2)
    assert second_pid != first_pid
    # what overlap remains: from the second run's start to the first run's end, at most a heartbeat
    # period and the SIGTERM
    overlap = ended_epoch - second_start
    assert overlap < HEARTBEAT + 1.0, overlap
    row = job(conn, job_id)
    assert row["status"] == "completed" and row["locked_by"] == "second"
    insights = conn.execute("SELECT count(*) AS n FROM insights WHERE job_id = %s", (job_id,)).fetchone()
    assert insights == {"n": 1}
    assert not first.events("job_completed")
