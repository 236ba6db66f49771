"""A DATABASE_URL password never reaches logs, errors or `config show`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests import workflows
from tests.acceptance.daemon import REPO, Daemon, write_config
from tests.factories import insert_job

pytestmark = pytest.mark.acceptance
SECRET = "Pa55-w0rd-never-logged"


def with_password(dsn: str) -> str:
    params = conninfo_to_dict(dsn)
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    return f"postgresql://{params.get('user', 'postgres')}:{SECRET}@{host}:{port}/{params['dbname']}"


def job_cron(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobcron", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_password_absent_from_a_whole_daemon_run(
    conn: psycopg.Connection[dict[str, Any]], dsn: str, tmp_path: Path
) -> None:
    insert_job(conn, job_type="noop", metadata={"access_token": "tok-should-not-appear"})
    insert_job(conn, job_type="permanent")
    config = write_config(
        tmp_path / "c.json", workflows=workflows.ALL, job_processing={"execution_mode": "inline"}
    )
    d = Daemon(with_password(dsn), config, "--worker-id", "secretive")
    try:
        d.wait_event("job_failed", timeout=20)
        d.wait_event("job_completed", timeout=20)
        d.signal(signal.SIGTERM)
        assert d.wait_exit() == 0
        output = "".join(d.raw) + (d.proc.stdout.read() if d.proc.stdout else "")
    finally:
        d.stop()
    assert SECRET not in output
    assert "tok-should-not-appear" not in output
    assert "worker_started" in output


def test_password_absent_from_config_show_and_connection_errors(dsn: str) -> None:
    url = with_password(dsn)
    shown = job_cron("config", "show", env={"DATABASE_URL": url})
    assert shown.returncode == 0 and SECRET not in shown.stdout + shown.stderr and "***" in shown.stdout
    dead = url.replace(f":{conninfo_to_dict(dsn).get('port', '5432')}/", ":1/")
    failed = job_cron(
        "migrate", "--check", env={"DATABASE_URL": dead, "JOB_CRON_DATABASE_CONNECT_TIMEOUT_SECONDS": "2"}
    )
    assert failed.returncode == 1
    assert SECRET not in failed.stdout + failed.stderr
    assert "database unavailable" in failed.stderr


def test_keyword_dsn_password_is_scrubbed(dsn: str) -> None:
    keyword = make_conninfo(dsn, password=SECRET, port="1", connect_timeout="2")
    failed = job_cron("migrate", "--check", env={"DATABASE_URL": keyword})
    assert failed.returncode == 1 and SECRET not in failed.stdout + failed.stderr


def test_password_absent_from_status_workers_health_and_errors(
    conn: psycopg.Connection[dict[str, Any]], dsn: str
) -> None:
    from tests.ops_cli import run

    insert_job(conn, job_type="noop", status="processing", user_id="ann")
    conn.execute("INSERT INTO job_workers (id, host, pid, state) VALUES ('w1', 'h', 1, 'running')")
    url = with_password(dsn)
    outputs = []
    for args in (
        ["status"],
        ["status", "--json"],
        ["workers"],
        ["health"],
        ["health", "--json"],
        ["jobs", "list"],
        ["config", "show"],
        ["jobs", "show", "00000000-0000-0000-0000-000000000000"],  # exit 1: no such job
        [
            "enqueue",
            "--type",
            "noop",
            "--file-id",
            "00000000-0000-0000-0000-000000000000",
        ],  # a database error
    ):
        result = run(url, *args)
        assert "Traceback" not in result.output
        outputs.append(result.output)
    assert SECRET not in "".join(outputs)
    assert "w1" in outputs[2] and "ann" in outputs[0]


def test_job_metadata_never_logged_wholesale(
    conn: psycopg.Connection[dict[str, Any]], dsn: str, tmp_path: Path
) -> None:
    """Process mode, debug level, jobs that complete, retry, fail and are refused: no metadata value in any output."""
    token, note = "tok-9f8e7d-metadata", "note-1a2b3c-metadata"
    metadata = {"api_token": token, "nested": {"password": token}, "note": note, "list": [note]}
    ids = [
        insert_job(conn, job_type="noop", metadata=metadata),
        insert_job(conn, job_type="with_insights", metadata=metadata, user_id="ann"),
        insert_job(conn, job_type="boom", metadata=metadata, max_retries=1),
        insert_job(conn, job_type="permanent", metadata=metadata),
        insert_job(conn, job_type="no_such_type", metadata=metadata),
        insert_job(conn, job_type="noop", metadata={**metadata, "pad": "x" * 300}),
    ]
    config = write_config(
        tmp_path / "c.json",
        workflows=workflows.ALL,
        job_processing={"execution_mode": "process", "max_metadata_bytes": 300},
        retry={"durable_backoff_seconds": 0, "durable_backoff_max_seconds": 0},
    )
    d = Daemon(with_password(dsn), config, "--worker-id", "tight-lipped")
    try:
        for job_id in ids:
            d.wait_for(
                lambda line, job_id=job_id: (
                    line.get("job_id") == job_id and line.get("event") in ("job_completed", "job_failed")
                ),
                timeout=30,
            )
        d.signal(signal.SIGTERM)
        assert d.wait_exit() == 0
        output = "".join(d.raw) + (d.proc.stdout.read() if d.proc.stdout else "")
    finally:
        d.stop()
    assert len(d.events("job_retry_scheduled")) == 1  # the durable retry path was logged too
    assert token not in output and note not in output
    assert SECRET not in output
