"""Retention prunes old finished jobs only, in batches, and keeps insights; auto_start_processing false pauses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from jobcron import store
from jobcron.config import Config
from jobcron.daemon.worker import Worker
from tests.factories import insert_job, status_counts

Conn = psycopg.Connection[dict[str, Any]]


def test_prunes_old_finished_jobs_only_and_insights_survive(conn: Conn) -> None:
    old = datetime.now(UTC) - timedelta(days=10)
    for status in ("completed", "failed", "cancelled"):
        for _ in range(3):
            insert_job(conn, job_type="noop", status=status, completed_at=old)
    recent = insert_job(conn, job_type="noop", status="completed", completed_at=datetime.now(UTC))
    pending = insert_job(conn, job_type="noop", created_at=old, scheduled_at=old)
    running = insert_job(conn, job_type="noop", status="processing", started_at=old)
    kept_job = insert_job(conn, job_type="noop", status="completed", completed_at=old)
    conn.execute(
        "INSERT INTO insights (job_id, insight_type, content) VALUES (%s, 'summary', '{\"x\": 1}')",
        (kept_job,),
    )
    total = 0
    while n := store.prune_finished_jobs(conn, keep_seconds=7 * 86400, batch=4):
        total += n
    assert total == 10
    left = {r["id"] for r in conn.execute("SELECT id::text AS id FROM processing_jobs")}
    assert left == {recent, pending, running}
    insight = conn.execute("SELECT job_id, content FROM insights").fetchone()
    assert insight == {"job_id": None, "content": {"x": 1}}


def test_auto_start_false_starts_paused(conn: Conn, make_config: Any) -> None:
    config: Config = make_config(job_processing={"auto_start_processing": False})
    insert_job(conn, job_type="noop")
    worker = Worker(config, once=True)
    assert worker.run() == 0
    assert status_counts(conn) == {"pending": 1}
    assert store.paused_types(conn) == ["*"]
    conn.execute("DELETE FROM job_pauses")
    assert Worker(make_config(), once=True).run() == 0
    assert status_counts(conn) == {"completed": 1}


def test_auto_start_false_does_not_repause_a_running_fleet(conn: Conn, make_config: Any) -> None:
    # another daemon is alive and processing (an operator resumed it): a restart must not pause everyone
    conn.execute("INSERT INTO job_workers (id, host, pid, state) VALUES ('w-live', 'h', 1, 'idle')")
    config: Config = make_config(job_processing={"auto_start_processing": False})
    insert_job(conn, job_type="noop")
    assert Worker(config, once=True).run() == 0
    assert store.paused_types(conn) == []
    assert status_counts(conn) == {"completed": 1}
    # a dead fleet (no heartbeat for long) is a cold start: paused again
    conn.execute("UPDATE job_workers SET last_seen_at = now() - interval '1 hour'")
    Worker(config, once=True).run()
    assert store.paused_types(conn) == ["*"]
