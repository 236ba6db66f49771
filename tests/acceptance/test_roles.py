"""deploy/sql/roles.sql: a real daemon runs as the worker role, jobs are enqueued as the enqueuer role,
and neither can do more than that.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from jobcron.contrib.columns import TABLES
from tests import workflows
from tests.acceptance.daemon import Daemon, write_config
from tests.factories import insert_job
from tests.ops_cli import run
from tests.roles import Roles

pytestmark = pytest.mark.acceptance


@pytest.fixture
def roles(role_set: Roles) -> dict[str, str]:
    """roles.sql's two roles with its defaults, and a login role in each."""
    role_set.apply()
    return {kind: role_set.login(kind) for kind in ("worker", "enqueuer")}


def refused(conninfo: str, statement: str) -> str:
    """Run one statement as a role; it must be refused for want of privilege. The error text."""
    with psycopg.connect(conninfo, autocommit=True) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute(statement)
    assert isinstance(caught.value, psycopg.errors.InsufficientPrivilege), caught.value
    return str(caught.value)


def test_daemon_as_worker_role_and_enqueue_as_enqueuer_role(
    roles: dict[str, str], conn: psycopg.Connection[dict[str, Any]], tmp_path: Path
) -> None:
    enqueuer, worker = roles["enqueuer"], roles["worker"]
    # the enqueuer: jobs (one with a file) through the CLI, and a job for later whose status it reads
    ids = []
    for args in (
        ["--type", "with_insights"],
        ["--type", "with_insights", "--file", "q3.csv", "--user", "ann"],
    ):
        result = run(enqueuer, "enqueue", *args)
        assert result.exit_code == 0, result.output
        ids.append(result.stdout.split()[-1])
    # a dependant and a job with follow-ups: the links are written by trigger functions and the worker
    after = run(enqueuer, "enqueue", "--type", "noop", "--after", ids[0])
    assert after.exit_code == 0, after.output
    ids.append(after.stdout.split()[-1])
    spawn = run(
        enqueuer,
        "enqueue",
        "--type",
        "spawn",
        "--metadata",
        '{"followups": [{"job_type": "sleep", "metadata": {"seconds": 0}}]}',
    )
    assert spawn.exit_code == 0, spawn.output
    ids.append(spawn.stdout.split()[-1])
    later = run(enqueuer, "enqueue", "--type", "noop", "--run-at", "1h", "--dedup-key", "k1").stdout.split()[
        -1
    ]
    again = run(enqueuer, "enqueue", "--type", "noop", "--dedup-key", "k1")
    assert again.exit_code == 0 and later in again.stdout  # the dedup look-up works with its columns
    with psycopg.connect(enqueuer, autocommit=True, row_factory=dict_row) as app:
        row = app.execute("SELECT status, attempts FROM processing_jobs WHERE id = %s", (later,)).fetchone()
        assert row == {"status": "pending", "attempts": 0}
    # the owner adds what else the daemon must handle: a stale job of a dead worker, a due schedule
    insert_job(conn, status="processing", heartbeat_at="2000-01-01T00:00:00Z", locked_by="gone")
    conn.execute(
        "INSERT INTO job_schedules (name, job_type, kind, run_at, next_run_at) VALUES ('tick', 'noop', 'once', now(), now())"
    )
    config = write_config(
        tmp_path / "c.json",
        workflows=workflows.ALL,
        scheduler_settings={"cleanup_completed_jobs_days": 0.00003},  # ~2.6 s: retention deletes too
        daemon={"rescue_interval_seconds": 0.2, "retention_interval_seconds": 0.2, "stale_after_seconds": 5},
    )
    d = Daemon(worker, config, "--worker-id", "least-privilege")
    try:
        d.wait_event("worker_started", timeout=30)
        for job_id in ids:
            d.wait_event("job_completed", timeout=30, job_id=job_id)
        d.wait_event("jobs_rescued", timeout=30)
        d.wait_event("schedule_fired", timeout=30)
        d.wait_event("jobs_pruned", timeout=30)
    finally:
        d.stop_cleanly()
    # the follow-up ran too (retention may have pruned both rows since: the log says it)
    completed = {e["job_id"]: e["job_type"] for e in d.events("job_completed")}
    assert list(completed.values()).count("sleep") == 1, completed
    insights = conn.execute("SELECT count(*) AS n FROM insights WHERE file_id IS NOT NULL").fetchone()
    assert insights == {"n": 2}  # the job with a file: its insights were written by the worker role
    assert conn.execute("SELECT count(*) AS n FROM job_workers").fetchone() == {"n": 0}  # unregistered

    # what the enqueuer may not do
    refused(enqueuer, "UPDATE processing_jobs SET status = 'failed'")
    refused(enqueuer, "DELETE FROM processing_jobs")
    refused(enqueuer, "SELECT lease_token FROM processing_jobs")
    refused(enqueuer, "INSERT INTO processing_jobs (job_type, status) VALUES ('noop', 'completed')")
    refused(enqueuer, "INSERT INTO processing_jobs (job_type, result) VALUES ('noop', '{}')")
    refused(enqueuer, "INSERT INTO processing_jobs (job_type, enqueued_by) VALUES ('noop', 'someone')")
    refused(enqueuer, "UPDATE insights SET content = '{}'")
    refused(enqueuer, "INSERT INTO insights (content) VALUES ('{}')")
    refused(enqueuer, "SELECT * FROM job_workers")
    refused(enqueuer, "SELECT * FROM jobcron_tokens")  # the web surface's tokens: the owner's alone
    refused(enqueuer, "SELECT * FROM jobcron_sessions")
    refused(enqueuer, "INSERT INTO job_pauses (job_type) VALUES ('*')")
    refused(enqueuer, "SELECT * FROM job_dependencies")
    refused(enqueuer, "SELECT * FROM jobcron_webhooks")
    refused(enqueuer, "INSERT INTO processing_jobs (job_type, waiting_on) VALUES ('noop', 5)")
    # what the worker may not do
    assert "must be owner" in refused(worker, "DROP TABLE processing_jobs")
    assert "must be owner" in refused(worker, "ALTER TABLE processing_jobs ADD COLUMN x int")
    refused(worker, "CREATE TABLE mine (a int)")
    refused(worker, "TRUNCATE processing_jobs")
    refused(worker, "SELECT * FROM insights")
    refused(worker, "DELETE FROM insights")
    refused(worker, "DELETE FROM files")
    refused(worker, "DELETE FROM job_schedules")
    refused(worker, "SELECT * FROM jobcron_tokens")
    refused(worker, "SELECT * FROM jobcron_sessions")
    refused(worker, "INSERT INTO jobcron_migrations (version, name, checksum) VALUES (99, 'x', 'y')")
    # and the owner's tables are all still there
    tables = conn.execute("SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert tables is not None and tables["n"] == len(TABLES)


def test_row_security_each_enqueuing_role_reads_only_its_own_jobs(
    role_set: Roles, conn: psycopg.Connection[dict[str, Any]], tmp_path: Path
) -> None:
    role_set.apply("row_security=on")
    worker = role_set.login("worker")
    apps = {who: role_set.login("enqueuer", who) for who in ("ann", "bob")}
    ids = {}
    for who, app in apps.items():
        result = run(app, "enqueue", "--type", "with_insights", "--file", f"{who}.csv", "--user", who)
        assert result.exit_code == 0, result.output
        ids[who] = result.stdout.split()[-1]
    config = write_config(tmp_path / "c.json", workflows=workflows.ALL)
    d = Daemon(worker, config, "--worker-id", "row-security")
    try:
        d.wait_event("worker_started", timeout=30)
        for job_id in ids.values():
            d.wait_event("job_completed", timeout=30, job_id=job_id)
        d.signal(signal.SIGTERM)
        assert d.wait_exit() == 0
    finally:
        d.stop()
    for who, app in apps.items():
        with psycopg.connect(app, autocommit=True, row_factory=dict_row) as c:
            jobs = c.execute("SELECT id::text, status, result, enqueued_by FROM processing_jobs").fetchall()
            assert [(j["id"], j["status"], j["enqueued_by"]) for j in jobs] == [
                (ids[who], "completed", c.info.user)
            ]
            assert jobs[0]["result"] is not None
            found = c.execute("SELECT DISTINCT job_id::text AS job_id, count(*) OVER () AS n FROM insights")
            assert [(r["job_id"], r["n"]) for r in found] == [(ids[who], 2)]
            files = c.execute("SELECT original_name FROM files").fetchall()
            assert files == [{"original_name": f"{who}.csv"}]
            # another role's job cannot be touched through a guessed id either
            other = next(v for k, v in ids.items() if k != who)
            assert c.execute("SELECT 1 FROM processing_jobs WHERE id = %s", (other,)).fetchone() is None
    # the owner sees all; turned off again, every enqueuer reads every job
    assert conn.execute("SELECT count(*) AS n FROM processing_jobs").fetchone() == {"n": 2}
    role_set.apply("row_security=off")
    with psycopg.connect(apps["ann"], autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM processing_jobs").fetchone() == (2,)
    secured = conn.execute(
        "SELECT count(*) AS n FROM pg_class WHERE relname IN ('processing_jobs', 'files', 'insights') AND relrowsecurity"
    ).fetchone()
    assert secured == {"n": 0}
