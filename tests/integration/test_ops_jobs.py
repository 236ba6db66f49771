"""`job_cron jobs ...`, `pause` and `resume` against a real database, including their error paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from jobcron import store
from jobcron.admin import jobs as admin_jobs
from jobcron.config import Config
from jobcron.errors import InvalidInput, JobCronError, JobNotFound
from tests.factories import insert_file, insert_job, job
from tests.ops_cli import run, run_json

Conn = psycopg.Connection[dict[str, Any]]
NOW = datetime.now(UTC)
MISSING = "00000000-0000-4000-8000-000000000000"


def ago(**kw: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kw)


def test_list_filters_and_newest_first(conn: Conn, dsn: str) -> None:
    old = insert_job(conn, job_type="report", user_id="ann", created_at=ago(days=3))
    failed = insert_job(
        conn, job_type="report", user_id="bob", status="failed", completed_at=ago(hours=1), error_message="x"
    )
    pending = insert_job(conn, job_type="noop", user_id="ann")
    ids = [j["id"] for j in run_json(dsn, "jobs", "list")]
    assert ids == [pending, failed, old]
    assert [j["id"] for j in run_json(dsn, "jobs", "list", "--status", "failed")] == [failed]
    assert [j["id"] for j in run_json(dsn, "jobs", "list", "--user", "ann")] == [pending, old]
    assert [j["id"] for j in run_json(dsn, "jobs", "list", "--type", "report", "--since", "1d")] == [failed]
    since = ago(days=4).isoformat()
    assert len(run_json(dsn, "jobs", "list", "--since", since, "--limit", "2")) == 2
    assert {
        "id",
        "status",
        "job_type",
        "user_id",
        "priority",
        "attempts",
        "created_at",
        "error_message",
    } <= set(run_json(dsn, "jobs", "list")[0])
    text = run(dsn, "jobs", "list", "--status", "failed").stdout
    assert failed in text and "STATUS" in text


def test_list_rejects_bad_arguments(conn: Conn, dsn: str) -> None:
    bad_since = run(dsn, "jobs", "list", "--since", "yesterday")
    assert bad_since.exit_code == 2
    assert bad_since.stderr.startswith("job_cron: error: --since: not a duration: 'yesterday'")
    assert run(dsn, "jobs", "list", "--status", "stuck").exit_code == 2
    assert run(dsn, "jobs", "list", "--limit", "0").exit_code == 2
    with pytest.raises(InvalidInput, match="unknown status"):
        admin_jobs.list_jobs(conn, statuses=["stuck"])


def test_show_has_everything(conn: Conn, dsn: str) -> None:
    file_id = insert_file(conn, "/data/q3.csv", original_name="q3.csv")
    job_id = insert_job(
        conn,
        job_type="analysis",
        status="completed",
        completed_at=NOW,
        file_id=file_id,
        metadata={"quarter": 3, "api_token": "s3cret"},
        result={"rows": 10},
        errors=[{"attempt": 1, "type": "ValueError", "message": "first try failed", "worker": "w1"}],
    )
    conn.execute(
        "INSERT INTO insights (job_id, file_id, insight_type, content, confidence_score) "
        "VALUES (%s, %s, 'summary', '{}', 0.9)",
        (job_id, file_id),
    )
    shown = run_json(dsn, "jobs", "show", job_id)
    assert shown["result"] == {"rows": 10}
    assert shown["errors"][0]["message"] == "first try failed"
    assert shown["file_path"] == "/data/q3.csv" and shown["insights"] == 1
    assert shown["insights_list"][0]["insight_type"] == "summary"
    assert shown["metadata"] == {"quarter": 3, "api_token": "***"}
    assert run_json(dsn, "jobs", "show", job_id, "--show-secrets")["metadata"]["api_token"] == "s3cret"
    text = run(dsn, "jobs", "show", job_id).stdout
    assert "first try failed" in text and "history (1)" in text and "s3cret" not in text


def test_show_unknown_and_malformed_ids(dsn: str) -> None:
    unknown = run(dsn, "jobs", "show", MISSING)
    assert unknown.exit_code == 1
    assert unknown.stderr == f"job_cron: error: no job with id {MISSING}\n"
    malformed = run(dsn, "jobs", "show", "42")
    assert malformed.exit_code == 2 and "not a job id" in malformed.stderr
    for command in ("cancel", "retry"):
        assert run(dsn, "jobs", command, MISSING).exit_code == 1
        assert run(dsn, "jobs", command, "nope").exit_code == 2


def test_cancel_pending_job_ends_at_once(conn: Conn, dsn: str) -> None:
    job_id = insert_job(conn, job_type="noop", dedup_key="k")
    assert run_json(dsn, "jobs", "cancel", job_id)["action"] == "cancelled"
    row = job(conn, job_id)
    assert row["status"] == "cancelled" and row["completed_at"] is not None
    assert row["errors"][-1]["type"] == "CancelRequested"
    again = run(dsn, "jobs", "cancel", job_id)
    assert again.exit_code == 0 and "already cancelled" in again.stdout
    done = insert_job(conn, job_type="noop", status="completed", completed_at=NOW)
    refused = run(dsn, "jobs", "cancel", done)
    assert refused.exit_code == 1 and "is completed" in refused.stderr


@pytest.mark.parametrize("force", [False, True])
def test_cancel_running_job_reaches_its_daemon(conn: Conn, dsn: str, force: bool) -> None:
    token = "11111111-2222-4333-8444-555555555555"
    job_id = insert_job(conn, job_type="sleep", status="processing", lease_token=token, locked_by="w1")
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN jobcron_cancel")
        args = ["jobs", "cancel", job_id, *(["--force"] if force else [])]
        data = run_json(dsn, *args)
        payloads = {n.payload for n in listener.notifies(timeout=2, stop_after=2 if force else 1)}
    assert data == {
        "id": job_id,
        "status": "processing",
        "action": "force_requested" if force else "cancel_requested",
        "worker": "w1",
    }
    assert job_id in payloads
    assert (f"{job_id}:force" in payloads) is force
    # a daemon that missed the notification learns the same from its next heartbeat
    assert store.heartbeat_job(conn, job_id, token) == ("force" if force else "cancel")


def test_a_plain_cancel_can_be_upgraded_to_force(conn: Conn, dsn: str) -> None:
    token = "11111111-2222-4333-8444-555555555556"
    job_id = insert_job(conn, job_type="sleep", status="processing", lease_token=token)
    assert store.heartbeat_job(conn, job_id, token) == ""
    run_json(dsn, "jobs", "cancel", job_id)
    assert store.heartbeat_job(conn, job_id, token) == "cancel"
    run_json(dsn, "jobs", "cancel", job_id, "--force")
    assert store.heartbeat_job(conn, job_id, token) == "force"


def test_retry_resets_the_retry_budget_and_keeps_history(conn: Conn, dsn: str) -> None:
    file_id = insert_file(conn, "/data/a.csv", status="failed")
    job_id = insert_job(
        conn,
        job_type="noop",
        status="failed",
        completed_at=NOW,
        retry_count=3,
        attempts=4,
        error_message="boom",
        file_id=file_id,
        errors=[{"attempt": 4, "type": "ValueError", "message": "boom"}],
    )
    data = run_json(dsn, "jobs", "retry", job_id)
    assert data == {"id": job_id, "status": "pending", "was": "failed", "retry_count_was": 3, "attempts": 4}
    row = job(conn, job_id)
    assert (row["status"], row["retry_count"], row["attempts"], row["error_message"]) == (
        "pending",
        0,
        4,
        None,
    )
    assert row["completed_at"] is None and row["scheduled_at"] <= datetime.now(UTC)
    assert [e["type"] for e in row["errors"]] == ["ValueError", "RetriedByOperator"]
    assert conn.execute("SELECT status FROM files WHERE id = %s", (file_id,)).fetchone() == {
        "status": "uploaded"
    }
    refused = run(dsn, "jobs", "retry", job_id)
    assert refused.exit_code == 1 and "only failed or cancelled jobs can be retried" in refused.stderr


def test_retry_refuses_when_the_dedup_key_is_taken(conn: Conn) -> None:
    old = insert_job(conn, job_type="noop", status="failed", completed_at=NOW, dedup_key="nightly")
    insert_job(conn, job_type="noop", dedup_key="nightly")
    with pytest.raises(JobCronError, match="dedup_key 'nightly'"):
        admin_jobs.retry_job(conn, old)
    assert job(conn, old)["status"] == "failed"


def test_reset_stale_takes_only_jobs_whose_worker_went_silent(conn: Conn, dsn: str, make_config: Any) -> None:
    config: Config = make_config(daemon={"stale_after_seconds": 60})
    stale = insert_job(
        conn, job_type="noop", status="processing", started_at=ago(hours=3), heartbeat_at=ago(minutes=5)
    )
    alive = insert_job(
        conn, job_type="noop", status="processing", started_at=ago(hours=3), heartbeat_at=ago(seconds=1)
    )
    spent = insert_job(
        conn,
        job_type="noop",
        status="processing",
        heartbeat_at=ago(minutes=5),
        retry_count=2,
        max_retries=2,
    )
    preview = admin_jobs.reset_stale(conn, config, dry_run=True)
    assert {j["id"] for j in preview["jobs"]} == {stale, spent}
    assert job(conn, stale)["status"] == "processing"

    done = run_json(dsn, "jobs", "reset-stale")
    assert {(j["id"], j["status"]) for j in done["jobs"]} == {(stale, "pending"), (spent, "failed")}
    row = job(conn, stale)
    assert row["retry_count"] == 1 and row["errors"][-1]["type"] == "ResetByOperator"
    assert job(conn, alive)["status"] == "processing"


def test_reset_stale_takes_a_live_job_only_when_told(conn: Conn, dsn: str, make_config: Any) -> None:
    token = "11111111-2222-4333-8444-555555555557"
    alive = insert_job(
        conn,
        job_type="noop",
        status="processing",
        lease_token=token,
        started_at=ago(hours=8),
        heartbeat_at=ago(seconds=1),
    )
    refused = run(dsn, "jobs", "reset-stale", "--include-alive")
    assert refused.exit_code == 2 and "--include-alive needs --older-than" in refused.stderr
    assert run(dsn, "jobs", "reset-stale", "--older-than", "soon").exit_code == 2
    assert run_json(dsn, "jobs", "reset-stale", "--older-than", "6h")["jobs"] == []
    taken = run_json(dsn, "jobs", "reset-stale", "--older-than", "6h", "--include-alive")
    assert [(j["id"], j["alive"]) for j in taken["jobs"]] == [(alive, True)]
    assert job(conn, alive)["status"] == "pending"
    # the worker still running it has lost its lease: it can neither heartbeat nor record a result
    assert store.heartbeat_job(conn, alive, token) is None


def test_purge_deletes_old_finished_jobs_and_keeps_insights(conn: Conn, dsn: str) -> None:
    old = [
        insert_job(conn, job_type="noop", status=s, completed_at=ago(days=40))
        for s in ("completed", "completed", "failed", "cancelled")
    ]
    recent = insert_job(conn, job_type="noop", status="completed", completed_at=ago(days=1))
    waiting = insert_job(conn, job_type="noop", created_at=ago(days=90), scheduled_at=ago(days=90))
    conn.execute(
        "INSERT INTO insights (job_id, insight_type, content) VALUES (%s, 'summary', '{\"kept\": true}')",
        (old[0],),
    )
    assert run_json(dsn, "jobs", "purge", "--older-than", "30d", "--dry-run")["jobs"] == 4
    assert run_json(dsn, "jobs", "purge", "--older-than", "30d", "--status", "failed")["jobs"] == 1
    assert admin_jobs.purge(conn, older_than_seconds=30 * 86400, batch=2)["jobs"] == 3
    left = {r["id"] for r in conn.execute("SELECT id::text AS id FROM processing_jobs")}
    assert left == {recent, waiting}
    assert conn.execute("SELECT job_id, content FROM insights").fetchone() == {
        "job_id": None,
        "content": {"kept": True},
    }


def test_purge_rejects_bad_arguments(conn: Conn, dsn: str) -> None:
    bad = run(dsn, "jobs", "purge", "--older-than", "thirty days")
    assert bad.exit_code == 2 and "--older-than: not a duration" in bad.stderr
    assert run(dsn, "jobs", "purge").exit_code == 2
    assert run(dsn, "jobs", "purge", "--older-than", "1d", "--status", "pending").exit_code == 2
    with pytest.raises(InvalidInput, match="only finished jobs"):
        admin_jobs.purge(conn, older_than_seconds=1, statuses=["processing"])


def test_pause_and_resume(conn: Conn, dsn: str) -> None:
    assert run_json(dsn, "pause")["changed"] is True
    assert run_json(dsn, "pause")["changed"] is False
    assert run_json(dsn, "pause", "--type", "report")["job_type"] == "report"
    assert store.paused_types(conn) == ["*", "report"]
    text = run(dsn, "resume").stdout
    assert "resumed: all job types" in text and "paused now: report" in text
    assert store.paused_types(conn) == ["report"]
    assert run_json(dsn, "resume", "--all")["lifted"] == ["report"]
    assert store.paused_types(conn) == []
    bad = run(dsn, "pause", "--type", "no spaces")
    assert bad.exit_code == 2 and "job_type" in bad.stderr
    assert run(dsn, "resume", "--all", "--type", "x").exit_code == 2


def test_unknown_job_raises_not_found(conn: Conn) -> None:
    with pytest.raises(JobNotFound):
        admin_jobs.show_job(conn, MISSING)
    with pytest.raises(JobNotFound):
        admin_jobs.cancel_job(conn, MISSING)
