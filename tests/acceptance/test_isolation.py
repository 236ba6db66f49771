"""Process mode: timeouts, cancels, crashes and memory limits end only the job; the daemon goes on."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobcron.config import Config
from jobcron.daemon.worker import Worker
from tests import workflows
from tests.acceptance.daemon import Daemon, write_config
from tests.factories import insert_job, job

pytestmark = pytest.mark.acceptance
Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def process_config(make_config: Any) -> Config:
    cfg: Config = make_config(
        workflows=workflows.ALL,
        job_processing={"execution_mode": "process", "memory_limit_mb": 300},
        daemon={"cancel_grace_seconds": 0.5},
        scheduler_settings={"max_retries": 0},
    )
    return cfg


def drain(worker: Worker) -> None:
    while worker.run_once():
        pass


def test_timeout_kills_the_job_and_follows_the_retry_policy(conn: Conn, process_config: Config) -> None:
    job_id = insert_job(conn, job_type="hang", timeout_seconds=1)
    after = insert_job(conn, job_type="noop")
    worker = Worker(process_config)
    t0 = time.monotonic()
    drain(worker)
    assert time.monotonic() - t0 < 8
    row = job(conn, job_id)
    assert row["status"] == "failed"
    assert "timed out after 1 s" in row["error_message"]
    assert job(conn, after)["status"] == "completed"
    worker.close_job_process()


def test_timeout_with_retries_left_goes_back_to_pending(conn: Conn, make_config: Any) -> None:
    config: Config = make_config(workflows=workflows.ALL, job_processing={"execution_mode": "process"})
    job_id = insert_job(conn, job_type="hang", timeout_seconds=1, max_retries=2)
    worker = Worker(config)
    worker.run_once()
    row = job(conn, job_id)
    assert row["status"] == "pending" and row["retry_count"] == 1 and row["errors"][0]["type"] == "JobTimeout"
    worker.close_job_process()


@pytest.mark.parametrize(
    ("job_type", "cause"),
    [("segfault", "signal SIGSEGV"), ("exit_now", "exit code 7"), ("hog", "MemoryError")],
)
def test_crashes_are_contained(conn: Conn, process_config: Config, job_type: str, cause: str) -> None:
    job_id = insert_job(conn, job_type=job_type)
    after = insert_job(conn, job_type="with_insights")
    worker = Worker(process_config)
    drain(worker)
    row = job(conn, job_id)
    assert row["status"] == "failed"
    assert cause in row["error_message"] or cause == row["errors"][-1]["type"], row["error_message"]
    assert job(conn, after)["status"] == "completed"
    worker.close_job_process()


def test_workflows_run_in_another_process(conn: Conn, process_config: Config, tmp_path: Path) -> None:
    log = tmp_path / "log"
    insert_job(conn, job_type="record", metadata={"log": str(log)})
    worker = Worker(process_config)
    drain(worker)
    pid = int(log.read_text().split()[1])
    assert pid != os.getpid()
    worker.close_job_process()


def test_daemon_rss_stays_flat_over_many_process_jobs(conn: Conn, process_config: Config) -> None:
    conn.execute("INSERT INTO processing_jobs (job_type) SELECT 'noop' FROM generate_series(1, 1000)")
    worker = Worker(process_config, max_jobs=100)
    drain(worker)
    before = _rss_kb()
    worker.max_jobs = None
    drain(worker)
    growth_mb = (_rss_kb() - before) / 1024
    assert conn.execute("SELECT count(*) AS n FROM processing_jobs WHERE status='completed'").fetchone() == {
        "n": 1000
    }
    assert growth_mb < 5, f"daemon RSS grew {growth_mb:.1f} MB over 900 process-mode jobs"
    assert (
        worker.job_process is not None and worker.job_process.children_started == 1
    )  # one warm child served all
    worker.close_job_process()


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize(("job_type", "force"), [("cooperative", False), ("hang", False), ("hang", True)])
def test_cancel_of_a_running_job_on_another_daemon(
    conn: Conn, dsn: str, tmp_path: Path, job_type: str, force: bool
) -> None:
    config = write_config(
        tmp_path / "c.json",
        workflows=workflows.ALL,
        job_processing={"execution_mode": "process"},
        daemon={"cancel_grace_seconds": 1, "heartbeat_interval_seconds": 0.5},
    )
    d = Daemon(dsn, config, "--worker-id", "remote")
    try:
        d.wait_event("worker_started")
        job_id = insert_job(conn, job_type=job_type)
        d.wait_event("job_claimed", job_id=job_id)
        time.sleep(0.5)
        t0 = time.monotonic()
        conn.execute("UPDATE processing_jobs SET cancel_requested = true WHERE id = %s", (job_id,))
        if force:
            conn.execute("SELECT pg_notify('jobcron_cancel', %s)", (f"{job_id}:force",))
        d.wait_event("job_cancelled", timeout=10, job_id=job_id)
        took = time.monotonic() - t0
        assert took < 2.5, f"cancel took {took:.2f}s"
        if force:
            assert took < 1.5
        row = job(conn, job_id)
        assert row["status"] == "cancelled" and row["completed_at"] is not None
        d.signal(signal.SIGTERM)
        assert d.wait_exit() == 0
    finally:
        d.stop()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(c) for c in text)
    return found


def test_a_killed_daemons_job_process_dies_with_it(conn: Conn, dsn: str, tmp_path: Path) -> None:
    # the job is rescued and run again elsewhere: an orphan still running it would run it twice at once
    config = write_config(tmp_path / "config.json", job_processing={"execution_mode": "process"})
    daemon = Daemon(dsn, config, "--interval", "5")
    try:
        insert_job(conn, job_type="sleep", metadata={"seconds": 60})
        daemon.wait_event("job_claimed", timeout=30)
        deadline = time.monotonic() + 10
        while not (children := _children(daemon.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert children, "the job process was not found"
        daemon.signal(signal.SIGKILL)
        daemon.proc.wait(10)
        deadline = time.monotonic() + 5
        alive = children
        while alive and time.monotonic() < deadline:
            alive = [c for c in alive if Path(f"/proc/{c}").exists() and "Z" not in _state(c)]
            time.sleep(0.05)
        assert not alive, f"job process {alive} outlived its daemon"
    finally:
        daemon.stop()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return "gone"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


def test_the_job_process_is_warm_before_the_first_job_and_nothing_outlives_the_daemon(
    conn: Conn, dsn: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.json", job_processing={"execution_mode": "process"})
    daemon = Daemon(dsn, config, "--interval", "5")
    try:
        daemon.wait_event("worker_started", timeout=30)
        # started with the daemon, not at the first job; and the only child (no resource tracker,
        # which systemd had to SIGKILL at every stop)
        children = _children(daemon.proc.pid)
        assert len(children) == 1 and "child_main" in _cmdline(children[0]), [_cmdline(c) for c in children]
        job_id = insert_job(conn, job_type="noop")
        daemon.wait_event("job_completed", job_id=job_id, timeout=10)
        assert _children(daemon.proc.pid) == children  # the same warm process ran it
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
        assert not [c for c in children if Path(f"/proc/{c}").exists() and "Z" not in _state(c)]
    finally:
        daemon.stop()


def test_a_frozen_daemons_job_process_ends_before_its_job_can_be_rescued(
    conn: Conn, dsn: str, tmp_path: Path
) -> None:
    # SIGSTOP (or a paused VM): the daemon's lease runs out and another daemon may run the job again;
    # the first run must be over by then, or the job runs twice at once
    stale = 4.0
    config = write_config(
        tmp_path / "config.json",
        job_processing={"execution_mode": "process"},
        daemon={"stale_after_seconds": stale, "heartbeat_interval_seconds": 0.5},
    )
    daemon = Daemon(dsn, config, "--interval", "5")
    try:
        job_id = insert_job(conn, job_type="sleep", metadata={"seconds": 60})
        daemon.wait_event("job_claimed", job_id=job_id, timeout=30)
        deadline = time.monotonic() + 10
        while not (children := _children(daemon.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = children[-1]
        time.sleep(0.5)  # the job is running in it
        daemon.signal(signal.SIGSTOP)
        frozen = time.monotonic()
        while Path(f"/proc/{child}").exists() and "Z" not in _state(child) and time.monotonic() - frozen < 30:
            time.sleep(0.05)
        ended = time.monotonic() - frozen
        # ended by itself, before the lease could be judged lost (heartbeat older than stale_after)
        assert ended < stale - 0.5, f"the job process ran {ended:.1f}s into the freeze"
        daemon.signal(signal.SIGCONT)
        row = daemon.wait_event("job_retry_scheduled", job_id=job_id, timeout=20)
        assert "exit code 70" in row["error"]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
    finally:
        daemon.stop()


def test_a_cancel_that_comes_before_its_job_reaches_the_job_process_is_kept(
    conn: Conn, make_config: Any
) -> None:
    # the cancel and the job travel on two pipes, read by two threads of the job process
    config: Config = make_config(
        job_processing={"execution_mode": "process"}, daemon={"cancel_grace_seconds": 60}
    )
    worker = Worker(config)
    try:
        for _ in range(5):
            job_id = insert_job(conn, job_type="sleep", metadata={"seconds": 60})
            worker.on_job_start = lambda claimed: worker.maintenance.lease.cancel_requested(claimed.id)
            t0 = time.monotonic()
            assert worker.run_once()
            assert time.monotonic() - t0 < 10  # honoured by the workflow, not ended by the grace
            assert job(conn, job_id)["status"] == "cancelled"
    finally:
        worker.close_job_process()
