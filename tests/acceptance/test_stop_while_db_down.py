"""SIGTERM is a clean stop (exit 0) whatever the database is doing: not there yet, or gone mid-run."""

from __future__ import annotations

import signal
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

pytestmark = pytest.mark.acceptance


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_server(server_dir: Path) -> Iterator[Any]:
    from jobcron.dev.embedded import EmbeddedServer

    server = EmbeddedServer(data_dir=server_dir / "data", fast=True)
    server.start()
    with psycopg.connect(server.dsn, autocommit=True, row_factory=dict_row) as conn:
        migrate.migrate(conn)
    yield server
    server.stop()


def test_sigterm_while_waiting_for_the_database_at_start_exits_0(tmp_path: Path) -> None:
    """`systemctl stop` before the database ever answered: a clean stop, so the unit is not `failed`."""
    d = Daemon(f"postgresql://app@127.0.0.1:{free_port()}/app", write_config(tmp_path / "c.json"))
    try:
        d.wait_event("db_unavailable", timeout=20)
        began = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait_exit(15) == 0
        assert time.monotonic() - began < 10
        stopped = d.wait_event("worker_stopped", timeout=1)
        assert stopped["exit_code"] == 0 and stopped["waiting_for_db"] is True
    finally:
        d.stop()


def test_sigterm_during_an_outage_exits_0_within_the_grace(private_server: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", daemon={"shutdown_grace_seconds": 1})
    d = Daemon(private_server.dsn, config, "--worker-id", "cut-off")
    try:
        d.wait_event("worker_started", timeout=30)
        private_server.stop()
        d.wait_event("db_unavailable", timeout=20)
        began = time.monotonic()
        d.signal(signal.SIGTERM)
        # the grace (1 s) plus the few seconds a stopping daemon still gives the server to come back
        assert d.wait_exit(20) == 0
        assert time.monotonic() - began < 15
        assert d.wait_event("worker_stopped", timeout=1)["exit_code"] == 0
    finally:
        d.stop()


def test_once_gives_up_on_an_outage_mid_run_after_the_configured_wait(
    private_server: Any, tmp_path: Path
) -> None:
    """`run --once` from cron must end: a server gone while it records a job is waited for, not forever."""
    with psycopg.connect(private_server.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO processing_jobs (job_type, metadata) VALUES ('slow', %s)",
            (psycopg.types.json.Jsonb({"seconds": 1.5}),),
        )
    config = write_config(
        tmp_path / "c.json",
        workflows=workflows.ALL,
        job_processing={"execution_mode": "inline"},
        daemon={"once_db_wait_seconds": 2},
    )
    d = Daemon(private_server.dsn, config, "--once")
    try:
        d.wait_for(lambda line: line.get("event") == "job_claimed", timeout=30)
        private_server.stop()
        began = time.monotonic()
        assert d.wait_exit(30) == 1
        assert time.monotonic() - began < 20
        stderr = "".join(d.raw)
        assert "gave up after 2s" in stderr and "daemon.once_db_wait_seconds" in stderr
        assert "Traceback" not in stderr
    finally:
        d.stop()
