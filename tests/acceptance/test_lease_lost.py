"""A running job whose lease goes while it runs: an operator's blind reset, and an outage longer than
stale_after_seconds, with real daemons, job processes and a server of the test's own."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from jobcron import migrate
from tests import workflows
from tests.acceptance.daemon import Daemon, write_config
from tests.factories import insert_job, job

pytestmark = pytest.mark.acceptance

Conn = psycopg.Connection[dict[str, Any]]
# the emergency reset some runbooks give (running jobs back to pending), as an operator pastes it into psql
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
    except (FileNotFoundError, ProcessLookupError):  # gone between the open and the read
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
    # one job only: once its run is cut short, the reset job must be the second daemon's to take
    # (the first would otherwise race it for the job it just lost)
    first = Daemon(dsn, config, "--worker-id", "first", "--max-jobs", "1")
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


def test_a_record_held_up_past_stale_after_is_not_rescued_by_its_own_daemon(
    dsn: str, conn: Conn, tmp_path: Path, daemons: list[Daemon]
) -> None:
    # another application locks the insights table: the job's record waits for it, the job's heartbeat
    # has stopped (the job is over) and ages past stale_after_seconds, while the rescue, which does
    # not touch insights, runs every 0.1 s
    log = tmp_path / "runs.log"
    config = write_config(
        tmp_path / "c.json",
        workflows=workflows.ALL,
        daemon={
            "heartbeat_interval_seconds": HEARTBEAT,
            "stale_after_seconds": 1,
            "rescue_interval_seconds": 0.1,
            "interval_seconds": 0.2,
        },
        job_processing={"execution_mode": "inline"},
    )
    d = Daemon(dsn, config, "--worker-id", "held-up")
    daemons.append(d)
    d.wait_event("worker_started", timeout=30)
    with psycopg.connect(dsn, application_name="other-app") as other:
        other.execute("LOCK TABLE insights IN ACCESS EXCLUSIVE MODE")
        job_id = insert_job(conn, job_type="slow", metadata={"seconds": 0.2, "log": str(log)})
        wait_for_runs(log, 1)
        time.sleep(3)
        other.rollback()
    d.wait_event("job_completed", job_id=job_id, timeout=20)
    row = job(conn, job_id)
    assert row["status"] == "completed" and row["attempts"] == 1 and row["retry_count"] == 0, row["errors"]
    assert len(runs(log)) == 1
    assert not d.events("jobs_rescued") and not d.events("lease_lost")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_server(server_dir: Path) -> Iterator[Any]:
    from jobcron.dev.embedded import EmbeddedServer

    # a fixed port: the server comes back where the daemon looks for it
    server = EmbeddedServer(data_dir=server_dir / "data", port=free_port(), fast=True)
    server.start()
    with psycopg.connect(server.dsn, autocommit=True, row_factory=dict_row) as c:
        migrate.migrate(c)
    yield server
    server.stop()


def test_after_an_outage_longer_than_stale_after_a_daemon_records_its_own_job_once(
    private_server: Any, tmp_path: Path, daemons: list[Daemon]
) -> None:
    log = tmp_path / "runs.log"
    config = write_config(
        tmp_path / "c.json",
        workflows=workflows.ALL,
        daemon={
            "heartbeat_interval_seconds": HEARTBEAT,
            "stale_after_seconds": 1,
            "rescue_interval_seconds": 0.1,
            "interval_seconds": 0.2,
        },
        job_processing={"execution_mode": "process"},
    )
    d = Daemon(private_server.dsn, config, "--worker-id", "through-the-outage")
    daemons.append(d)
    d.wait_event("worker_started", timeout=30)
    with psycopg.connect(private_server.dsn, autocommit=True, row_factory=dict_row) as c:
        job_id = insert_job(c, job_type="slow", metadata={"seconds": 1.5, "log": str(log)})
    wait_for_runs(log, 1)
    # the job ends while the server is away: its record waits, its heartbeat ages past stale_after
    private_server.stop()
    time.sleep(3)
    private_server.start()
    d.wait_event("job_completed", job_id=job_id, timeout=60)
    with psycopg.connect(private_server.dsn, autocommit=True, row_factory=dict_row) as c:
        row = job(c, job_id)
        insights = c.execute("SELECT count(*) AS n FROM insights WHERE job_id = %s", (job_id,)).fetchone()
    assert row["status"] == "completed" and row["attempts"] == 1 and row["retry_count"] == 0, row["errors"]
    assert insights == {"n": 1}
    assert len(runs(log)) == 1
    assert not d.events("jobs_rescued") and not d.events("lease_lost")
