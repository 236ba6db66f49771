"""The worker id as the systemd units hand it over: JOB_CRON_WORKER_ID, and --worker-id above it."""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.daemon import Daemon, write_config
from tests.factories import insert_job, job

pytestmark = pytest.mark.acceptance
Conn = psycopg.Connection[dict[str, Any]]

# stale_after_seconds far above the test's timeouts: only the rescue at start can put the job back
SLOW_RESCUE = {"stale_after_seconds": 600, "rescue_interval_seconds": 600}


def test_a_daemon_started_under_job_cron_worker_id_rescues_its_earlier_runs_job_at_once(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    # job_cron.service sets JOB_CRON_WORKER_ID=%H-%N: the run before a crash left this job processing,
    # with a heartbeat too fresh for the stale-job rule
    left = insert_job(
        conn,
        job_type="noop",
        status="processing",
        locked_by="vm-job_cron",
        heartbeat_at=datetime.now().astimezone(),
    )
    config = write_config(
        tmp_path / "c.json", daemon=SLOW_RESCUE, job_processing={"execution_mode": "inline"}
    )
    d = Daemon(dsn, config, env={"JOB_CRON_WORKER_ID": "vm-job_cron"})
    daemons.append(d)
    started = d.wait_event("worker_started")
    assert started["worker_id"] == "vm-job_cron"
    assert d.wait_event("jobs_rescued_at_start", timeout=5)["job_ids"] == [left]
    done = d.wait_event("job_completed", timeout=10, job_id=left)
    assert done["worker_id"] == "vm-job_cron"
    row = job(conn, left)
    assert row["status"] == "completed" and row["attempts"] == 2
    assert row["errors"][-1]["type"] == "WorkerLost"
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0


def test_worker_id_on_the_command_line_beats_the_environment(
    dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    # job_cron@.service passes --worker-id %H-%i: a JOB_CRON_WORKER_ID in the env file every instance
    # shares must not give them all one id
    config = write_config(tmp_path / "c.json", job_processing={"execution_mode": "inline"})
    d = Daemon(dsn, config, "--worker-id", "vm-2", env={"JOB_CRON_WORKER_ID": "shared"})
    daemons.append(d)
    assert d.wait_event("worker_started")["worker_id"] == "vm-2"
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
