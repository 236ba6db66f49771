"""`job_cron run` as a real process: wake-up latency, SIGTERM with and without grace, kill -9, SIGHUP."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import workflows
from tests.acceptance.daemon import FAST, Daemon, write_config
from tests.factories import insert_job, job

pytestmark = pytest.mark.acceptance
Conn = psycopg.Connection[dict[str, Any]]


def start(
    daemons: list[Daemon], dsn: str, tmp_path: Path, name: str = "d", *args: str, **daemon: Any
) -> Daemon:
    config = write_config(
        tmp_path / f"{name}.json",
        daemon={**FAST, **daemon},
        workflows=workflows.ALL,
        job_processing={"execution_mode": "inline"},
    )
    d = Daemon(dsn, config, "--worker-id", name, *args)
    daemons.append(d)
    d.wait_event("worker_started")
    return d


def wait_until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_plain_insert_wakes_an_idle_daemon_at_once(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    d = start(daemons, dsn, tmp_path, "idle", interval_seconds=30)
    time.sleep(0.5)  # let it settle into its 30 s wait
    conn.execute(
        "INSERT INTO processing_jobs (file_id, business_description, job_type) VALUES (NULL, 'plain application insert', 'noop')"
    )
    line = d.wait_event("job_completed", timeout=5)
    row = job(conn, line["job_id"])
    pickup = (row["started_at"] - row["created_at"]).total_seconds()
    assert pickup < 0.5, f"picked up after {pickup:.3f}s"


def test_sigterm_lets_a_slow_job_finish(conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]) -> None:
    d = start(daemons, dsn, tmp_path, "graceful", shutdown_grace_seconds=20)
    job_id = insert_job(conn, job_type="slow", metadata={"seconds": 1.5})
    d.wait_event("job_claimed", job_id=job_id)
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    row = job(conn, job_id)
    assert row["status"] == "completed" and row["attempts"] == 1
    assert conn.execute("SELECT count(*) AS n FROM job_workers").fetchone() == {"n": 0}


def test_sigterm_past_the_grace_puts_the_job_back_uncharged(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    d = start(daemons, dsn, tmp_path, "impatient", shutdown_grace_seconds=1)
    job_id = insert_job(conn, job_type="slow", metadata={"seconds": 60})
    d.wait_event("job_claimed", job_id=job_id)
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait_exit(timeout=15) == 0
    assert time.monotonic() - t0 < 10
    row = job(conn, job_id)
    assert row["status"] == "pending"
    assert row["attempts"] == 0 and row["retry_count"] == 0
    assert row["errors"][-1]["type"] == "Interrupted"
    assert d.events("job_interrupted")


def test_second_signal_cuts_the_grace_short(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    d = start(daemons, dsn, tmp_path, "twice", shutdown_grace_seconds=120)
    job_id = insert_job(conn, job_type="slow", metadata={"seconds": 60})
    d.wait_event("job_claimed", job_id=job_id)
    d.signal(signal.SIGTERM)
    time.sleep(0.3)
    d.signal(signal.SIGINT)
    assert d.wait_exit(timeout=15) == 0
    assert job(conn, job_id)["status"] == "pending"


def test_kill_9_mid_job_is_rescued_and_recorded_once(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    log = tmp_path / "executions.log"
    victim = start(daemons, dsn, tmp_path, "victim")
    job_id = insert_job(conn, job_type="record", metadata={"log": str(log), "seconds": 2})
    victim.wait_event("job_claimed", job_id=job_id)
    wait_until(lambda: log.exists() and log.read_text().strip() != "")
    victim.signal(signal.SIGKILL)
    victim.wait_exit()
    assert job(conn, job_id)["status"] == "processing"
    rescuer = start(daemons, dsn, tmp_path, "rescuer")
    rescuer.wait_event("job_completed", timeout=30, job_id=job_id)
    row = job(conn, job_id)
    assert row["status"] == "completed" and row["retry_count"] == 1 and row["attempts"] == 2
    assert row["errors"][0]["type"] == "WorkerLost" and row["errors"][0]["worker"] == "victim"
    assert conn.execute("SELECT count(*) AS n FROM insights WHERE job_id=%s", (job_id,)).fetchone() == {
        "n": 1
    }
    assert len(log.read_text().splitlines()) == 2  # executed twice, recorded once
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait_exit() == 0


def test_sighup_reloads_config(conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]) -> None:
    d = start(daemons, dsn, tmp_path, "reload")
    write_config(
        tmp_path / "reload.json",
        daemon={**FAST, "interval_seconds": 7},
        workflows=workflows.ALL,
        scheduler_settings={"max_retries": 9},
    )
    d.signal(signal.SIGHUP)
    line = d.wait_event("config_reloaded")
    assert line["config"]["scheduler_settings"]["max_retries"] == 9
    (tmp_path / "reload.json").write_text("{broken")
    d.signal(signal.SIGHUP)
    d.wait_event("config_reload_failed")
    insert_job(conn, job_type="noop")
    d.wait_event("job_completed")  # still working on the last good config
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0


def test_schema_out_of_date_refuses_to_start(empty_dsn: str, tmp_path: Path) -> None:
    d = Daemon(empty_dsn, write_config(tmp_path / "c.json"))
    try:
        assert d.wait_exit() == 3
    finally:
        d.stop()
    assert "job_cron migrate" in "".join(d.raw)
