"""ctx.progress from a real daemon, inline and in the job process: stored with the heartbeat, throttled."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import jobcron
from tests import workflows
from tests.acceptance.daemon import Daemon, write_config
from tests.ops_cli import run

pytestmark = pytest.mark.acceptance

# every write of a new progress value, counted by the database itself
COUNT_WRITES = """
CREATE TABLE progress_writes (job_id uuid, progress jsonb, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION count_progress() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO progress_writes (job_id, progress) VALUES (NEW.id, NEW.progress);
    RETURN NEW;
END $$;
CREATE TRIGGER count_progress AFTER UPDATE OF progress ON processing_jobs
    FOR EACH ROW WHEN (NEW.progress IS DISTINCT FROM OLD.progress) EXECUTE FUNCTION count_progress();
"""


def progress_listener(dsn: str) -> psycopg.Connection[Any]:
    """A connection listening on jobcron_progress."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("LISTEN jobcron_progress")
    return conn


@pytest.mark.parametrize("mode", ["inline", "process"])
def test_a_tight_loop_of_progress_calls_costs_about_one_write_a_second(
    dsn: str, tmp_path: Path, mode: str
) -> None:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(COUNT_WRITES)
        config = write_config(
            tmp_path / "c.json",
            workflows=workflows.ALL,
            job_processing={"execution_mode": mode},
            daemon={"heartbeat_interval_seconds": 30},  # progress, not the heartbeat, is what writes
        )
        listener = progress_listener(dsn)
        daemon = Daemon(dsn, config, "--worker-id", f"progress-{mode}")
        try:
            daemon.wait_event("worker_started", timeout=30)
            job_id = jobcron.enqueue(conn, "progress_loop", metadata={"seconds": 4})
            job = jobcron.wait(conn, job_id, timeout=60)
        finally:
            daemon.stop_cleanly()
        with listener:
            told = [json.loads(n.payload) for n in listener.notifies(timeout=0.5)]
        assert job.status == "completed", job
        calls = job.result["calls"]
        writes = conn.execute(
            "SELECT progress, at FROM progress_writes WHERE job_id = %s ORDER BY at", (job_id,)
        ).fetchall()
    # thousands of calls, a handful of writes: about one a second over 4 s (the first at once)
    assert calls > 1000, calls
    assert 2 <= len(writes) <= 6, [w["progress"] for w in writes]
    gaps = [(b["at"] - a["at"]).total_seconds() for a, b in itertools.pairwise(writes)]
    assert min(gaps) >= 0.9, gaps
    fractions = [w["progress"]["fraction"] for w in writes]
    assert fractions == sorted(fractions) and 0 <= fractions[0] < fractions[-1] <= 1
    assert writes[-1]["progress"]["message"].startswith("step ") and writes[-1]["progress"]["attempt"] == 1

    # each write is told to listeners of jobcron_progress, with what was written
    assert [(t["id"], t["fraction"], t["message"]) for t in told] == [
        (job_id, w["progress"]["fraction"], w["progress"]["message"]) for w in writes
    ]

    shown = json.loads(run(dsn, "jobs", "show", job_id, "--json").stdout)
    assert shown["progress"]["fraction"] == fractions[-1]
    text = run(dsn, "jobs", "show", job_id).stdout
    assert f"{fractions[-1] * 100:.0f}% step " in text


def test_progress_shows_in_status_while_the_job_runs_and_a_bad_fraction_fails_the_job(
    dsn: str, tmp_path: Path
) -> None:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        config = write_config(tmp_path / "c.json", workflows=workflows.ALL)
        daemon = Daemon(dsn, config, "--worker-id", "progress-status")
        try:
            daemon.wait_event("worker_started", timeout=30)
            job_id = jobcron.enqueue(conn, "progress_loop", metadata={"seconds": 4})
            running: dict[str, Any] = {}
            for _ in range(100):
                status = json.loads(run(dsn, "status", "--json").stdout)
                running = next((r for r in status["running"] if r["id"] == job_id), {})
                if running.get("progress"):
                    break
            assert running.get("progress_text", "").endswith("(attempt 1)"), running
            assert "PROGRESS" in run(dsn, "status").stdout
            jobcron.wait(conn, job_id, timeout=60)
            bad = jobcron.enqueue(conn, "bad_progress", max_retries=0)
            failed = jobcron.wait(conn, bad, timeout=60)
        finally:
            daemon.stop_cleanly()
    assert failed.status == "failed"
    assert "ctx.progress: fraction must be a number from 0 to 1, got 1.5" in (failed.error_message or "")
