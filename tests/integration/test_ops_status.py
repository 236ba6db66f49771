"""`job_cron status`, `workers` and `health` against a real database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from jobcron.admin import status as admin_status
from jobcron.config import Config
from tests.factories import insert_job
from tests.ops_cli import run, run_json
from tests.processes import reap

Conn = psycopg.Connection[dict[str, Any]]
REPO = Path(__file__).resolve().parents[2]
STATUS_FIELDS = {
    "generated_at",
    "counts",
    "finished_counts_exact",
    "pending_due",
    "pending_scheduled",
    "pending_parked",
    "oldest_pending",
    "running",
    "stale_jobs",
    "users",
    "workers",
    "schedules_due",
    "paused",
    "last_hour",
}


def ago(**kw: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kw)


def add_worker(conn: Conn, worker_id: str, last_seen: datetime) -> None:
    conn.execute(
        "INSERT INTO job_workers (id, host, pid, state, last_seen_at) VALUES (%s, 'h1', 42, 'running', %s)",
        (worker_id, last_seen),
    )


def a_busy_queue(conn: Conn) -> dict[str, str]:
    """Jobs in every state, two workers (one dead), a due schedule, a pause."""
    ids = {
        "oldest": insert_job(conn, job_type="report", user_id="ann", scheduled_at=ago(minutes=30)),
        "running": insert_job(
            conn,
            job_type="analysis",
            user_id="ann",
            status="processing",
            locked_by="w-alive",
            started_at=ago(minutes=2),
        ),
    }
    insert_job(conn, job_type="report", user_id="ann", scheduled_at=ago(minutes=5))
    insert_job(conn, job_type="report", user_id="bob", scheduled_at=ago(minutes=1))
    insert_job(conn, job_type="report", scheduled_at=datetime.now(UTC) + timedelta(hours=1))
    for status in ("completed", "completed", "completed", "failed", "cancelled"):
        insert_job(conn, job_type="noop", status=status, completed_at=ago(minutes=10))
    insert_job(conn, job_type="noop", status="failed", completed_at=ago(hours=3))
    add_worker(conn, "w-alive", datetime.now(UTC))
    add_worker(conn, "w-dead", ago(minutes=10))
    conn.execute(
        "INSERT INTO job_schedules (name, job_type, kind, interval_seconds, next_run_at) "
        "VALUES ('hourly-report', 'report', 'interval', 3600, %s)",
        (ago(minutes=3),),
    )
    conn.execute("INSERT INTO job_pauses (job_type, paused_by) VALUES ('report', 'test')")
    return ids


def test_status_reports_the_whole_queue(conn: Conn, dsn: str, make_config: Any) -> None:
    ids = a_busy_queue(conn)
    st = admin_status.collect_status(conn, make_config())
    assert set(st) == STATUS_FIELDS
    assert st["counts"] == {
        "waiting": 0,
        "pending": 4,
        "processing": 1,
        "completed": 3,
        "failed": 2,
        "cancelled": 1,
    }
    assert st["finished_counts_exact"] is True
    assert (st["pending_due"], st["pending_scheduled"]) == (3, 1)
    assert st["oldest_pending"]["id"] == ids["oldest"]
    assert 29 * 60 < st["oldest_pending"]["age_seconds"] < 40 * 60
    (running,) = st["running"]
    assert running["id"] == ids["running"] and running["worker"] == "w-alive"
    assert 100 < running["duration_seconds"] < 600
    assert st["users"][0] == {"user_id": "ann", "running": 1, "pending": 2}
    assert st["users"][1] == {"user_id": "bob", "running": 0, "pending": 1}
    workers = {w["id"]: w for w in st["workers"]["list"]}
    assert (st["workers"]["alive"], st["workers"]["dead"]) == (1, 1)
    assert workers["w-alive"]["job"]["id"] == ids["running"] and not workers["w-dead"]["alive"]
    assert st["schedules_due"]["count"] == 1 and st["schedules_due"]["list"][0]["name"] == "hourly-report"
    assert [p["job_type"] for p in st["paused"]] == ["report"]
    assert st["last_hour"] == {"completed": 3, "failed": 1, "cancelled": 1, "failure_rate": 0.25}

    assert set(run_json(dsn, "status")) == STATUS_FIELDS
    text = run(dsn, "status").stdout
    for expected in ("pending 4", ids["oldest"], "1 alive, 1 dead", "hourly-report", "failure rate 25.0%"):
        assert expected in text


def test_large_tables_get_estimated_finished_counts(conn: Conn, make_config: Any) -> None:
    conn.execute(
        "INSERT INTO processing_jobs (job_type, status, completed_at) "
        "SELECT 'noop', CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END, now() "
        "FROM generate_series(1, 2000) i"
    )
    insert_job(conn, job_type="noop")
    conn.execute("ANALYZE processing_jobs")
    st = admin_status.collect_status(conn, make_config(), exact=False)
    assert st["finished_counts_exact"] is False
    assert st["counts"]["pending"] == 1
    # ANALYZE read every row of this small table, so the estimate is close to the truth
    assert abs(st["counts"]["completed"] - 1800) <= 20 and abs(st["counts"]["failed"] - 200) <= 20
    assert "~1," in ops_status_text(st)


def ops_status_text(st: dict[str, Any]) -> str:
    from jobcron.cli.render import render_status

    return render_status(st)


def test_workers_command(conn: Conn, dsn: str) -> None:
    add_worker(conn, "w-alive", datetime.now(UTC))
    add_worker(conn, "w-dead", ago(hours=1))
    data = run_json(dsn, "workers")
    assert (data["alive"], data["dead"]) == (1, 1)
    assert [(w["id"], w["alive"]) for w in data["workers"]] == [("w-alive", True), ("w-dead", False)]
    assert set(data["workers"][0]) >= {"id", "host", "pid", "state", "last_seen_at", "job", "jobs_held"}
    text = run(dsn, "workers").stdout
    assert "1 alive, 1 dead" in text and "dead" in text


def test_health_levels_and_reasons(conn: Conn, dsn: str) -> None:
    unhealthy = run(dsn, "health")
    assert unhealthy.exit_code == 2 and "0 alive" in unhealthy.stdout

    add_worker(conn, "w1", datetime.now(UTC))
    healthy = run_json(dsn, "health")
    assert healthy["status"] == "healthy" and healthy["exit_code"] == 0
    assert {c["name"] for c in healthy["checks"]} == {
        "database",
        "schema",
        "workers",
        "stale_jobs",
        "oldest_pending",
        "paused",
        "failure_rate",
    }

    insert_job(conn, job_type="noop", status="processing", heartbeat_at=ago(minutes=10))
    degraded = run(dsn, "health")
    assert degraded.exit_code == 1 and "1 running job(s) without a heartbeat" in degraded.stdout

    conn.execute("DELETE FROM processing_jobs")
    insert_job(conn, job_type="noop", scheduled_at=ago(minutes=20))
    assert run(dsn, "health").exit_code == 1
    assert run(dsn, "health", "--max-pending-age", "1h", "--critical-pending-age", "2h").exit_code == 0
    assert run(dsn, "health", "--critical-pending-age", "15m").exit_code == 2
    bad = run(dsn, "health", "--max-pending-age", "soonish")
    assert bad.exit_code == 2 and "--max-pending-age: not a duration" in bad.stderr

    conn.execute("DELETE FROM processing_jobs")
    conn.execute("INSERT INTO job_pauses (job_type) VALUES ('*')")
    paused = run(dsn, "health")
    assert paused.exit_code == 1 and "claiming paused" in paused.stdout


def test_health_of_an_unreachable_or_unmigrated_database(empty_dsn: str) -> None:
    down = run("postgresql://postgres@127.0.0.1:1/nothing", "health", "--json")
    assert down.exit_code == 2
    assert '"status": "unhealthy"' in down.stdout and "unreachable" in down.stdout
    unmigrated = run(empty_dsn, "health")
    assert unmigrated.exit_code == 2 and "pending migrations: 0001_initial" in unmigrated.stdout


def test_status_watch_refreshes_until_ctrl_c(dsn: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOB_CRON_", "POSTGRES_URL"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobcron", "status", "--watch", "0.2"],
        env={**env, "DATABASE_URL": dsn, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = 0
        deadline = time.monotonic() + 30
        while seen < 2 and time.monotonic() < deadline:
            if proc.stdout.readline().startswith("job_cron status at"):
                seen += 1
        assert seen == 2, "status --watch did not refresh"
        proc.send_signal(signal.SIGINT)
        # read on while it stops: the refreshes printed meanwhile must not fill the pipe and block its exit
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "Traceback" not in err
    finally:
        reap(proc)


def test_dead_after_follows_the_worker_heartbeat(make_config: Any) -> None:
    config: Config = make_config(daemon={"worker_heartbeat_seconds": 2})
    assert admin_status.dead_after_seconds(config) == 6
