"""The foundation's command line as a user meets it: migrate, --check, an application's plain INSERT, config check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

REPO = Path(__file__).resolve().parents[2]
APPLICATION_INSERT = (
    "INSERT INTO processing_jobs (file_id, business_description, job_type) "
    "VALUES (NULL, 'quarterly revenue review', 'analysis')"
)


def job_cron(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run `python -m jobcron ARGS` with no inherited database settings."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("JOB_CRON_", "DATABASE_URL", "POSTGRES_URL"))
    }
    return subprocess.run(
        [sys.executable, "-m", "jobcron", *args],
        env={**base, "PYTHONPATH": str(REPO), **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_check_then_seed_insert_gives_one_pending_job(empty_dsn: str) -> None:
    env = {"DATABASE_URL": empty_dsn}
    before = job_cron("migrate", "--check", env=env)
    assert before.returncode == 3, before.stderr
    assert "job_cron migrate" in before.stderr

    applied = job_cron("migrate", env=env)
    assert applied.returncode == 0, applied.stderr
    assert "applied 0001_initial" in applied.stdout
    assert job_cron("migrate", "--check", env=env).returncode == 0
    again = job_cron("migrate", env=env)
    assert again.returncode == 0 and "schema is up to date" in again.stdout

    psql = shutil.which("psql")
    if psql:  # the way another application's operator would do it
        subprocess.run(
            [psql, empty_dsn, "-v", "ON_ERROR_STOP=1", "-c", APPLICATION_INSERT],
            check=True,
            capture_output=True,
        )
    else:
        with psycopg.connect(empty_dsn, autocommit=True) as c:
            c.execute(APPLICATION_INSERT)
    with psycopg.connect(empty_dsn, row_factory=dict_row) as c:
        rows: list[dict[str, Any]] = c.execute("SELECT * FROM processing_jobs").fetchall()
    assert len(rows) == 1
    job = rows[0]
    assert job["status"] == "pending" and job["id"] is not None
    assert job["metadata"] == {} and job["retry_count"] == 0 and job["attempts"] == 0
    assert job["priority"] == 0 and job["scheduled_at"] is not None and job["errors"] == []
    assert job["lease_token"] is None and job["locked_by"] is None and not job["cancel_requested"]


def test_print_sql_changes_nothing(empty_dsn: str) -> None:
    shown = job_cron("migrate", "--print-sql", env={"DATABASE_URL": empty_dsn})
    assert shown.returncode == 0 and "CREATE TABLE processing_jobs" in shown.stdout
    assert job_cron("migrate", "--check", env={"DATABASE_URL": empty_dsn}).returncode == 3


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ({"scheduler_settings": {"interval_minuts": 2}}, "scheduler_settings.interval_minuts"),
        ({"scheduler_settings": {"max_retries": "three"}}, "scheduler_settings.max_retries"),
        ({"job_processing": {"queue_priority": "random"}}, "job_processing.queue_priority"),
        ({"daemon": {"stale_after_seconds": -1}}, "daemon.stale_after_seconds"),
        ({"schedulr_settings": {}}, "schedulr_settings"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, content: dict[str, Any], named: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    result = job_cron("--config", str(path), "config", "check")
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_on_the_shipped_file_and_a_missing_file(tmp_path: Path) -> None:
    ok = job_cron("config", "check")
    assert ok.returncode == 0, ok.stderr
    missing = job_cron("--config", str(tmp_path / "nope.json"), "config", "check")
    assert missing.returncode == 2 and "not found" in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"scheduler_settings": {')
    bad = job_cron("--config", str(broken), "config", "check")
    assert bad.returncode == 2 and "line 1" in bad.stderr


def test_environment_overrides_file_and_flags_override_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"logging": {"level": "warning"}, "scheduler_settings": {"max_retries": 5}}))
    env = {
        "JOB_CRON_SCHEDULER_SETTINGS_MAX_RETRIES": "7",
        "DATABASE_URL": "postgresql://u:s3cret@db.example/app",
    }
    shown = job_cron("--config", str(path), "--log-level", "error", "config", "show", env=env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["scheduler_settings"]["max_retries"] == 7
    assert data["logging"]["level"] == "error"
    assert "s3cret" not in shown.stdout and "***" in data["database"]["url"]


@pytest.mark.parametrize(
    ("module_text", "named"),
    [
        (None, "No module named 'jobcron_missing_workflow'"),
        ("def broken(:\n", "SyntaxError"),
        ("raise RuntimeError('needs REPORTS_DIR')\n", "RuntimeError: needs REPORTS_DIR"),
    ],
    ids=["missing", "syntax_error", "raises_at_import"],
)
def test_a_workflow_that_cannot_be_imported_exits_2_naming_it(
    tmp_path: Path, module_text: str | None, named: str
) -> None:
    if module_text is not None:
        (tmp_path / "jobcron_missing_workflow.py").write_text(module_text)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"workflows": {"report": "jobcron_missing_workflow:run"}}))
    env = {"PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"}
    checked = job_cron("--config", str(path), "config", "check", env=env)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "workflows.report" in checked.stderr and named in checked.stderr
    assert "config ok" not in checked.stdout
    # no database is needed to find out: the daemon stops before it connects
    ran = job_cron("--config", str(path), "run", "--once", env=env)
    assert ran.returncode == 2, ran.stderr
    assert "workflows.report" in ran.stderr and named in ran.stderr
    assert "Traceback" not in ran.stderr
