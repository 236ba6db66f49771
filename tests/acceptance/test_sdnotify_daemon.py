"""A real `job_cron run` talking to a notify socket as systemd would see it: READY, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.daemon import Daemon, NotifySocket, write_config
from tests.factories import insert_job, job

pytestmark = pytest.mark.acceptance

WATCHDOG_SECONDS = 1.2


def test_notify_protocol_of_a_real_daemon(
    dsn: str, conn: psycopg.Connection[dict[str, Any]], tmp_path: Path, notify: NotifySocket
) -> None:
    # a polling interval far longer than WatchdogSec: an idle daemon must still prove it is alive
    config = write_config(
        tmp_path / "config.json",
        daemon={"interval_seconds": 60, "heartbeat_interval_seconds": 0.5},
        job_processing={"execution_mode": "inline"},
    )
    env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(int(WATCHDOG_SECONDS * 1e6))}
    d = Daemon(dsn, config, env=env)
    try:
        ready_at = notify.wait_for("READY=1")
        ready = next(m for _, m in notify.messages if "READY=1" in m)
        assert f"MAINPID={d.proc.pid}" in ready and "STATUS=idle" in ready
        d.wait_event("worker_started")
        # idle for several WatchdogSec while the poll interval is 60 s: the pings must go on
        idle_until = ready_at + WATCHDOG_SECONDS * 3
        while time.monotonic() < idle_until:
            time.sleep(0.1)

        # a job longer than WatchdogSec: the loop is busy, not hung, so the pings go on
        job_id = insert_job(conn, job_type="sleep", metadata={"seconds": WATCHDOG_SECONDS * 1.5})
        running_at = notify.wait_for(f"STATUS=running job {job_id} (sleep)")
        notify.wait_for("STATUS=idle", after=running_at)
        d.wait_event("job_completed", job_id=job_id)
        assert job(conn, job_id)["status"] == "completed"

        # SIGHUP: RELOADING=1 then READY=1 again, or systemd would show "reloading" for ever
        hup_at = time.monotonic()
        d.signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1", after=hup_at)
        notify.wait_for("READY=1", after=hup_at)
        d.wait_event("config_reloaded")

        observed_until = time.monotonic()
        d.signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", after=observed_until)
        assert d.wait_exit(30) == 0
    finally:
        d.stop()

    pings = [t for t in notify.times("WATCHDOG=1") if ready_at <= t <= observed_until]
    span = observed_until - ready_at
    assert span > 2 * WATCHDOG_SECONDS
    gaps = [b - a for a, b in zip([ready_at, *pings], [*pings, observed_until], strict=True)]
    # systemd's contract: never WatchdogSec without a ping
    assert max(gaps) < WATCHDOG_SECONDS, f"gaps {gaps}"
    # the daemon pings every WatchdogSec/3: not a flood of datagrams either
    assert len(pings) <= span / (WATCHDOG_SECONDS / 6), f"{len(pings)} pings in {span:.1f} s"
    assert os.path.exists(notify.path)
