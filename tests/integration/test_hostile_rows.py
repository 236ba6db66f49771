"""Rows other applications write with plain SQL, wrong in every way we could think of.

Each one is either refused by the schema at INSERT (the error names the constraint or the column),
or accepted and then fails as a job with a clear message while the worker goes on and a good job
queued behind it completes. docs/reliability.md lists every case with its outcome.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from jobcron import store
from jobcron.admin import jobs as admin_jobs
from jobcron.config import Config
from jobcron.daemon.worker import Worker
from tests.ops_cli import run

Conn = psycopg.Connection[dict[str, Any]]
JOBS = "INSERT INTO processing_jobs "


@pytest.fixture(scope="module")
def dsn(pg_admin_dsn: str, template_db: str) -> Iterator[str]:
    """One database for the module (overrides the per-test one): every case drains what it queues."""
    name = f"jobcron_hostile_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield make_conninfo(pg_admin_dsn, dbname=name)
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- refused at INSERT --------------------------------------------------------------------------------

REFUSED = [
    ("uppercase status", JOBS + "(job_type, status) VALUES ('noop', 'PENDING')", "processing_jobs_status_valid"),
    ("unknown status", JOBS + "(job_type, status) VALUES ('noop', 'queued')", "processing_jobs_status_valid"),
    ("NULL status", JOBS + "(job_type, status) VALUES ('noop', NULL)", 'column "status"'),
    ("NULL job_type", JOBS + "(job_type) VALUES (NULL)", 'column "job_type"'),
    ("no job_type at all", JOBS + "(business_description) VALUES ('x')", 'column "job_type"'),
    ("empty job_type", JOBS + "(job_type) VALUES ('')", "processing_jobs_job_type_not_empty"),
    ("job_type over 100 chars", JOBS + f"(job_type) VALUES ('{'x' * 101}')", "character varying(100)"),
    ("metadata an array", JOBS + "(job_type, metadata) VALUES ('noop', '[1, 2]')", "processing_jobs_metadata_object"),
    ("metadata a string", JOBS + "(job_type, metadata) VALUES ('noop', '\"x\"')", "processing_jobs_metadata_object"),
    ("metadata a number", JOBS + "(job_type, metadata) VALUES ('noop', '42')", "processing_jobs_metadata_object"),
    ("metadata JSON null", JOBS + "(job_type, metadata) VALUES ('noop', 'null')", "processing_jobs_metadata_object"),
    ("metadata not JSON", JOBS + "(job_type, metadata) VALUES ('noop', '{oops')", "invalid input syntax for type json"),
    ("metadata with \\u0000", JOBS + "(job_type, metadata) VALUES ('noop', '{\"a\": \"\\u0000\"}')", "unsupported Unicode escape"),
    ("priority above 1000", JOBS + "(job_type, priority) VALUES ('noop', 1001)", "processing_jobs_priority_range"),
    ("priority below -1000", JOBS + "(job_type, priority) VALUES ('noop', -1001)", "processing_jobs_priority_range"),
    ("priority as text", JOBS + "(job_type, priority) VALUES ('noop', 'high')", "invalid input syntax for type integer"),
    ("NULL priority", JOBS + "(job_type, priority) VALUES ('noop', NULL)", 'column "priority"'),
    ("negative retry_count", JOBS + "(job_type, retry_count) VALUES ('noop', -1)", "processing_jobs_retry_count_non_negative"),
    ("negative max_retries", JOBS + "(job_type, max_retries) VALUES ('noop', -1)", "processing_jobs_max_retries_range"),
    ("max_retries over 1000", JOBS + "(job_type, max_retries) VALUES ('noop', 1001)", "processing_jobs_max_retries_range"),
    ("negative attempts", JOBS + "(job_type, attempts) VALUES ('noop', -1)", "processing_jobs_attempts_non_negative"),
    ("zero timeout", JOBS + "(job_type, timeout_seconds) VALUES ('noop', 0)", "processing_jobs_timeout_positive"),
    ("negative timeout", JOBS + "(job_type, timeout_seconds) VALUES ('noop', -5)", "processing_jobs_timeout_positive"),
    ("empty user_id", JOBS + "(job_type, user_id) VALUES ('noop', '')", "processing_jobs_user_id_not_empty"),
    (
        "file_id with no file row",
        JOBS + "(job_type, file_id) VALUES ('analysis', '00000000-0000-0000-0000-000000000001')",
        "processing_jobs_file_id_fkey",
    ),
    ("file_id not a uuid", JOBS + "(job_type, file_id) VALUES ('analysis', '42')", "invalid input syntax for type uuid"),
    ("schedule_id with no schedule", JOBS + "(job_type, schedule_id) VALUES ('noop', 999999)", "processing_jobs_schedule_id_fkey"),
    ("NULL scheduled_at", JOBS + "(job_type, scheduled_at) VALUES ('noop', NULL)", 'column "scheduled_at"'),
    ("NULL created_at", JOBS + "(job_type, created_at) VALUES ('noop', NULL)", 'column "created_at"'),
    ("NULL retry_count", JOBS + "(job_type, retry_count) VALUES ('noop', NULL)", 'column "retry_count"'),
    ("NULL cancel_requested", JOBS + "(job_type, cancel_requested) VALUES ('noop', NULL)", 'column "cancel_requested"'),
    ("NULL id", JOBS + "(id, job_type) VALUES (NULL, 'noop')", 'column "id"'),
    ("processing without a lease", JOBS + "(job_type, status) VALUES ('noop', 'processing')", "processing_jobs_processing_has_lease"),
    ("completed without completed_at", JOBS + "(job_type, status) VALUES ('noop', 'completed')", "processing_jobs_finished_has_time"),
    ("errors not an array", JOBS + "(job_type, errors) VALUES ('noop', '{}')", "processing_jobs_errors_array"),
    ("pending with a cancel request", JOBS + "(job_type, cancel_requested) VALUES ('noop', true)", "processing_jobs_pending_not_cancel_requested"),
    ("NULL file_path", "INSERT INTO files (file_path) VALUES (NULL)", 'column "file_path"'),
    ("empty file_path", "INSERT INTO files (file_path) VALUES ('')", "files_path_not_empty"),
    ("file_path over 500 chars", f"INSERT INTO files (file_path) VALUES ('{'a' * 501}')", "character varying(500)"),
    ("uppercase file status", "INSERT INTO files (file_path, status) VALUES ('a.csv', 'UPLOADED')", "files_status_valid"),
    ("insight confidence 1.5", "INSERT INTO insights (content, confidence_score) VALUES ('{}', 1.5)", "insights_confidence_range"),
    ("insight without content", "INSERT INTO insights (insight_type) VALUES ('x')", 'column "content"'),
    (
        "schedule of an unknown kind",
        "INSERT INTO job_schedules (name, job_type, kind) VALUES ('s', 'noop', 'hourly')",
        "job_schedules_kind_valid",
    ),
    (
        "schedule metadata an array",
        "INSERT INTO job_schedules (name, job_type, kind, run_at, metadata) VALUES ('s', 'noop', 'once', now(), '[]')",
        "job_schedules_metadata_object",
    ),
    ("worker in an unknown state", "INSERT INTO job_workers (id, host, pid, state) VALUES ('w', 'h', 1, 'zombie')", "job_workers_state_valid"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "sql", "named"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_at_insert_with_a_clear_name(conn: Conn, case: str, sql: str, named: str) -> None:
    before = conn.execute("SELECT count(*) AS n FROM processing_jobs").fetchone()
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql)
    assert named in str(caught.value), f"{case}: {caught.value}"
    assert conn.execute("SELECT count(*) AS n FROM processing_jobs").fetchone() == before


def test_a_second_pending_job_with_the_same_dedup_key_is_refused(conn: Conn) -> None:
    conn.execute(JOBS + "(job_type, dedup_key, scheduled_at) VALUES ('noop', 'k1', 'infinity')")
    with pytest.raises(psycopg.errors.UniqueViolation, match="processing_jobs_dedup_uniq"):
        conn.execute(JOBS + "(job_type, dedup_key) VALUES ('noop', 'k1')")


# --- accepted, then failed as a job (or run as designed); the worker goes on ------------------------------


def insert(conn: Conn, sql: str, params: Any = None) -> str:
    """Insert one row with plain SQL (RETURNING id)."""
    row = conn.execute(sql + " RETURNING id", params).fetchone()
    assert row is not None
    return str(row["id"])


def job(conn: Conn, job_id: str) -> dict[str, Any]:
    """The job's row without its metadata (which may be the hostile part) and times as text."""
    row = conn.execute(
        "SELECT id::text AS id, status, job_type, user_id, attempts, retry_count, error_message, errors, locked_by,"
        " started_at::text AS started_at FROM processing_jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return row


def drain(config: Config, limit: int = 20) -> None:
    """Run one worker until it finds nothing to do; it must never raise."""
    worker = Worker(config)
    for _ in range(limit):
        if not worker.run_once():
            return
    raise AssertionError(f"still busy after {limit} jobs")


def outcome(conn: Conn, config: Config, sql: str, params: Any = None) -> dict[str, Any]:
    """Insert a hostile row, queue a good job behind it, drain; the good job must complete."""
    bad = insert(conn, sql, params)
    good = insert(conn, JOBS + "(job_type, business_description) VALUES ('noop', 'good')")
    drain(config)
    assert job(conn, good)["status"] == "completed", "a hostile row held up the job behind it"
    row = job(conn, bad)
    if row["error_message"]:
        assert "Traceback" not in row["error_message"]
    return row


def failed_at_once(row: dict[str, Any], message: str) -> None:
    assert row["status"] == "failed", row
    assert message in row["error_message"], row["error_message"]
    assert row["retry_count"] == 0 and row["attempts"] == 1, "a hopeless job was retried"


def test_unknown_job_type_fails_at_once(conn: Conn, make_config: Any) -> None:
    row = outcome(conn, make_config(), JOBS + "(job_type) VALUES ('report')")
    failed_at_once(row, "unknown job_type 'report' (registered: analysis, jobcron.webhook, noop, sleep)")


def test_a_job_type_full_of_sql_is_just_an_unknown_name(conn: Conn, make_config: Any) -> None:
    evil = "x'; DROP TABLE processing_jobs; --"
    row = outcome(conn, make_config(), JOBS + "(job_type) VALUES (%s)", (evil,))
    failed_at_once(row, 'unknown job_type "x\'; DROP TABLE processing_jobs; --"')
    assert row["job_type"] == evil


def test_huge_metadata_fails_at_once(conn: Conn, make_config: Any) -> None:
    big = '{"blob": "' + "x" * 200_000 + '"}'
    row = outcome(conn, make_config(), JOBS + "(job_type, metadata) VALUES ('noop', %s::jsonb)", (big,))
    failed_at_once(row, "metadata is 200012 bytes, over job_processing.max_metadata_bytes (65536)")


def test_huge_metadata_is_neither_fetched_nor_printed_by_jobs_show(
    dsn: str, conn: Conn, make_config: Any
) -> None:
    big = '{"blob": "' + "x" * 2_000_000 + '", "token": "s3cret"}'  # a 50 MB row, scaled down
    row = outcome(conn, make_config(), JOBS + "(job_type, metadata) VALUES ('noop', %s::jsonb)", (big,))
    failed_at_once(row, "metadata is 2000031 bytes, over job_processing.max_metadata_bytes (65536)")
    shown = run(dsn, "jobs", "show", row["id"])
    assert shown.exit_code == 0, shown.output
    assert len(shown.stdout) < 5_000, "the metadata was printed"
    line = "metadata (not shown: 2,000,031 bytes, over the display cap of 1,048,576 bytes; --max-bytes raises it)"
    assert line in shown.stdout.splitlines()
    as_json = run(dsn, "jobs", "show", row["id"], "--json")
    assert as_json.exit_code == 0 and len(as_json.stdout) < 5_000
    data = json.loads(as_json.stdout)
    assert data["metadata"] is None and data["omitted"]["metadata"]["bytes"] == 2_000_031
    assert data["omitted"].keys() == {"metadata"} and data["errors"], "only the metadata is left out"
    # asked for, it is shown, secrets still hidden
    raised = run(dsn, "jobs", "show", row["id"], "--max-bytes", "3000000")
    assert raised.exit_code == 0 and '"blob": "xxxx' in raised.stdout and '"token": "***"' in raised.stdout
    # the operator query measures the value on the server and leaves it there
    fetched = store.ops_job_show(conn, row["id"], admin_jobs.SHOW_MAX_BYTES)
    assert fetched is not None and fetched["metadata"] is None and fetched["metadata_bytes"] == 2_000_031


def test_metadata_nested_past_the_parser_fails_the_job_not_the_worker(
    dsn: str, conn: Conn, make_config: Any
) -> None:
    deep = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"
    row = outcome(conn, make_config(), JOBS + "(job_type, metadata) VALUES ('noop', %s::jsonb)", (deep,))
    failed_at_once(row, "metadata is nested too deeply to be read")
    # and the operator can still look at the job
    shown = run(dsn, "jobs", "show", row["id"])
    assert shown.exit_code == 0, shown.output
    assert "metadata (not shown: nested deeper than 100 levels)" in shown.stdout
    assert "metadata is nested too deeply to be read" in shown.stdout  # the error history is there
    data = json.loads(run(dsn, "jobs", "show", row["id"], "--json").stdout)
    assert data["metadata"] is None
    assert data["omitted"] == {"metadata": {"bytes": 10007, "reason": "nested deeper than 100 levels"}}
    assert data["status"] == "failed"


def test_null_metadata_means_no_parameters(conn: Conn, make_config: Any) -> None:
    row = outcome(conn, make_config(), JOBS + "(job_type, metadata) VALUES ('noop', NULL)")
    assert row["status"] == "completed"


def test_metadata_of_the_wrong_shape_for_its_workflow(conn: Conn, make_config: Any) -> None:
    row = outcome(
        conn, make_config(), JOBS + """(job_type, metadata) VALUES ('sleep', '{"seconds": "forever"}')"""
    )
    failed_at_once(row, "sleep: metadata.seconds must be a number from 0 to 86400, got 'forever'")


def test_attempts_at_the_integer_limit_do_not_block_the_queue(conn: Conn, make_config: Any) -> None:
    row = outcome(conn, make_config(), JOBS + "(job_type, attempts) VALUES ('noop', 2147483647)")
    assert row["status"] == "completed" and row["attempts"] == 2147483647


def test_a_creation_time_python_cannot_hold(conn: Conn, make_config: Any) -> None:
    for when in ("-infinity", "infinity", "10000-01-01"):
        row = outcome(
            conn, make_config(), JOBS + "(job_type, created_at) VALUES ('noop', %s::timestamptz)", (when,)
        )
        assert row["status"] == "completed", when


def test_scheduled_at_infinity_never_runs_and_does_not_upset_an_idle_worker(
    dsn: str, conn: Conn, make_config: Any
) -> None:
    config = make_config(daemon={"interval_seconds": 7})
    never = insert(conn, JOBS + "(job_type, scheduled_at) VALUES ('noop', 'infinity')")
    worker = Worker(config)
    assert worker.run_once() is False
    assert worker.idle_wait() == 7  # the poll interval: no error, no busy loop
    row = conn.execute("SELECT status, attempts FROM processing_jobs WHERE id = %s", (never,)).fetchone()
    assert row == {"status": "pending", "attempts": 0}
    try:
        listed = run(dsn, "jobs", "list")
        assert listed.exit_code == 0, listed.output
        assert never in listed.stdout
        as_json = run(dsn, "jobs", "list", "--json")
        assert as_json.exit_code == 0, as_json.output
        assert {j["id"]: j["scheduled_at"] for j in json.loads(as_json.stdout)}[never] == "infinity"
        shown = run(dsn, "jobs", "show", never)
        assert shown.exit_code == 0, shown.output
        assert "  scheduled_at         infinity\n" in shown.stdout
    finally:
        conn.execute("DELETE FROM processing_jobs WHERE id = %s", (never,))


def test_infinite_times_in_every_column_the_operator_sees(dsn: str, conn: Conn) -> None:
    rows = [
        insert(conn, JOBS + "(job_type, created_at) VALUES ('noop', 'infinity')"),
        insert(conn, JOBS + "(job_type, scheduled_at) VALUES ('noop', '-infinity')"),
        insert(
            conn,
            JOBS + "(job_type, status, lease_token, locked_by, started_at, heartbeat_at, user_id)"
            " VALUES ('noop', 'processing', gen_random_uuid(), 'w', 'infinity', '-infinity', 'inf-user')",
        ),
        insert(
            conn,
            JOBS
            + "(job_type, status, started_at, completed_at) VALUES ('noop', 'failed', '-infinity', 'infinity')",
        ),
        insert(conn, JOBS + "(job_type, scheduled_at) VALUES ('noop', '10000-01-01')"),
    ]
    try:
        listed = json.loads(run(dsn, "jobs", "list", "--json").stdout)
        by_id = {j["id"]: j for j in listed}
        assert by_id[rows[0]]["created_at"] == "infinity"
        assert by_id[rows[1]]["scheduled_at"] == "-infinity"
        assert by_id[rows[2]]["started_at"] == "infinity"
        assert by_id[rows[3]]["completed_at"] == "infinity"
        assert by_id[rows[4]]["scheduled_at"].startswith("10000-01-01")  # as PostgreSQL writes it
        for job_id in rows:
            for args in (("jobs", "show", job_id), ("jobs", "show", job_id, "--json")):
                shown = run(dsn, *args)
                assert shown.exit_code == 0, f"{args}: {shown.output}"
        assert json.loads(run(dsn, "jobs", "show", rows[2], "--json").stdout)["run_seconds"] is None
        for command in ("status", "workers", "health", "jobs list", "jobs reset-stale --dry-run"):
            for extra in ((), ("--json",)):
                result = run(dsn, *command.split(), *extra)
                # health answers 0, 1 or 2 by what it finds; "cannot subtract infinite timestamps" was the bug
                assert result.exit_code in ((0, 1, 2) if command == "health" else (0,)), result.output
                assert "infinite" not in result.output, result.output
        status = json.loads(run(dsn, "status", "--json").stdout)
        assert status["oldest_pending"]["due_at"] == "-infinity"
        assert status["oldest_pending"]["age_seconds"] is not None  # it has waited since it was created
        assert [r["duration_seconds"] for r in status["running"] if r["id"] == rows[2]] == [None]
    finally:
        conn.execute("DELETE FROM processing_jobs WHERE id = ANY(%s::uuid[])", (rows,))


def test_negative_priority_is_valid_and_runs_last(conn: Conn, make_config: Any) -> None:
    low = insert(conn, JOBS + "(job_type, priority) VALUES ('noop', -1000)")
    high = insert(conn, JOBS + "(job_type, priority) VALUES ('noop', 5)")
    drain(make_config(job_processing={"queue_priority": "priority"}))
    first, last = job(conn, high), job(conn, low)
    assert first["status"] == last["status"] == "completed"
    assert last["started_at"] > first["started_at"]


def test_retry_count_already_past_max_retries_fails_without_retrying(conn: Conn, make_config: Any) -> None:
    from tests import workflows

    config = make_config(workflows=workflows.ALL)
    row = outcome(conn, config, JOBS + "(job_type, retry_count, max_retries) VALUES ('boom', 7, 1)")
    assert row["status"] == "failed" and row["attempts"] == 1 and "boom" in row["error_message"]


def test_a_row_inserted_as_processing_for_a_worker_that_never_existed_is_rescued(
    conn: Conn, make_config: Any
) -> None:
    config = make_config()
    ghost = insert(
        conn,
        JOBS + "(job_type, status, lease_token, locked_by, started_at, heartbeat_at, user_id, user_slot)"
        " VALUES ('noop', 'processing', gen_random_uuid(), 'no-such-worker', now() - interval '10 minutes',"
        " now() - interval '10 minutes', 'ann', 1)",
    )
    worker = Worker(config)
    assert worker.maintenance.rescue(conn) == [ghost]
    drain(config)
    row = job(conn, ghost)
    assert row["status"] == "completed", row
    assert row["errors"][0]["type"] == "WorkerLost"


def test_a_pending_row_with_leftover_lease_fields_is_claimed_normally(conn: Conn, make_config: Any) -> None:
    row = outcome(
        conn,
        make_config(),
        JOBS + "(job_type, lease_token, locked_by, heartbeat_at, user_slot, completed_at)"
        " VALUES ('noop', gen_random_uuid(), 'someone', now(), 7, now())",
    )
    assert row["status"] == "completed" and row["locked_by"] != "someone"


def test_long_text_fields_are_carried_not_choked_on(conn: Conn, make_config: Any) -> None:
    user = "u" * 10_000
    row = outcome(
        conn,
        make_config(),
        JOBS
        + "(job_type, user_id, business_description, timeout_seconds) VALUES ('noop', %s, %s, 2147483647)",
        (user, "d" * 1_000_000),
    )
    assert row["status"] == "completed" and row["user_id"] == user


# --- files: the analysis workflow's input -----------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    (tmp_path / "secret.csv").write_text("user,password\nadmin,hunter2\n")
    (folder / "ok.csv").write_text("region,revenue\nNorth,10\nSouth,20\n")
    (folder / "photo.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (folder / "empty.csv").write_bytes(b"")
    (folder / "big.csv").write_text("n\n" + "1\n" * 5000)
    (folder / "a folder.csv").mkdir()
    os.symlink(tmp_path / "secret.csv", folder / "link.csv")
    return folder


FILE_CASES = [
    ("binary", "photo.csv", "photo.csv is binary: a PNG image"),
    ("empty", "empty.csv", "empty.csv is empty"),
    ("enormous", "big.csv", "over job_processing.analysis_max_bytes (1000)"),
    ("symlink out of the root", "link.csv", "resolves outside job_processing.file_root"),
    ("dot-dot out of the root", "../secret.csv", "resolves outside job_processing.file_root"),
    ("absolute path elsewhere", "/etc/passwd", "resolves outside job_processing.file_root"),
    ("missing", "nowhere.csv", "file not found: nowhere.csv"),
    ("a folder", "a folder.csv", "is not a regular file"),
]


@pytest.mark.parametrize(("case", "path", "message"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_a_bad_file_fails_its_job_with_a_clear_message(
    conn: Conn, make_config: Any, root: Path, case: str, path: str, message: str
) -> None:
    config = make_config(job_processing={"file_root": str(root), "analysis_max_bytes": 1000})
    file_id = insert(conn, "INSERT INTO files (file_path) VALUES (%s)", (path,))
    row = outcome(conn, config, JOBS + "(job_type, file_id) VALUES ('analysis', %s)", (file_id,))
    failed_at_once(row, message)
    assert "hunter2" not in row["error_message"]
    assert conn.execute("SELECT status FROM files WHERE id = %s", (file_id,)).fetchone() == {
        "status": "failed"
    }


def test_a_file_row_deleted_after_the_job_was_queued(conn: Conn, make_config: Any, root: Path) -> None:
    config = make_config(job_processing={"file_root": str(root)})
    file_id = insert(conn, "INSERT INTO files (file_path) VALUES ('ok.csv')")
    bad = insert(conn, JOBS + "(job_type, file_id) VALUES ('analysis', %s)", (file_id,))
    conn.execute("DELETE FROM files WHERE id = %s", (file_id,))  # ON DELETE SET NULL
    drain(config)
    failed_at_once(job(conn, bad), "the job has no file")
