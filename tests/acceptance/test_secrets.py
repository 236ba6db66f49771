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
