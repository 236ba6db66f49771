"""The test's own PostgreSQL server restarted under a running daemon: it recovers and records each job once."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from jobcron import migrate
from tests import workflows
from tests.acceptance.daemon import Daemon, write_config

pytestmark = pytest.mark.acceptance


@pytest.fixture
def private_server(server_dir: Path) -> Iterator[object]:
    embedded = pytest.importorskip(
        "jobcron.dev.embedded", reason="the private-server module is not available"
    )
    server = embedded.EmbeddedServer(data_dir=server_dir / "data", fast=True)
    server.start()
    yield server
    server.stop()


def count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row["n"])


def test_daemon_survives_two_server_restarts(private_server: object, tmp_path: Path) -> None:
    dsn: str = private_server.dsn  # type: ignore[attr-defined]
    log = tmp_path / "executions.log"
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        migrate.migrate(conn)
        conn.execute(
            "INSERT INTO processing_jobs (job_type, metadata) SELECT 'record', %s FROM generate_series(1, 400)",
            (psycopg.types.json.Jsonb({"log": str(log), "seconds": 0.01}),),
        )
    config = write_config(
        tmp_path / "c.json",
        workflows=workflows.ALL,
        job_processing={"execution_mode": "inline"},
        daemon={"heartbeat_interval_seconds": 0.5, "stale_after_seconds": 30},
    )
    d = Daemon(dsn, config, "--worker-id", "survivor")
    try:
        d.wait_event("worker_started")
        for threshold in (100, 250):
            deadline = time.monotonic() + 60
            while (
                count(dsn, "SELECT count(*) AS n FROM processing_jobs WHERE status='completed'") < threshold
            ):
                assert time.monotonic() < deadline, "daemon stopped making progress"
                time.sleep(0.05)
            private_server.restart()  # type: ignore[attr-defined]
        d.wait_event("db_reconnected", timeout=30)
        deadline = time.monotonic() + 90
        while count(dsn, "SELECT count(*) AS n FROM processing_jobs WHERE status <> 'completed'") > 0:
            assert time.monotonic() < deadline, "jobs left unfinished after the restarts"
            time.sleep(0.1)
        assert d.proc.poll() is None  # it recovered without a restart of its own
        assert count(dsn, "SELECT count(*) AS n FROM insights") == 400
        assert count(dsn, "SELECT count(DISTINCT job_id) AS n FROM insights") == 400
        executions = len(log.read_text().splitlines())
        assert executions >= 400
        d.signal(signal.SIGTERM)
        assert d.wait_exit() == 0
    finally:
        d.stop()
