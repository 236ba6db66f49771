"""Migrations against a real server: from empty, re-run, concurrent migrators, an application's plain INSERT."""

from __future__ import annotations

import re
import threading
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from jobcron import migrate
from jobcron.errors import MigrationError, SchemaOutOfDate
from jobcron.models import JobStatus


def connect(dsn: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row)


def test_from_empty_then_rerun_is_a_noop(empty_dsn: str) -> None:
    with connect(empty_dsn) as conn:
        with pytest.raises(SchemaOutOfDate, match="job_cron migrate"):
            migrate.check(conn)
        applied = migrate.migrate(conn)
        assert [m.version for m in applied] == [m.version for m in migrate.available()]
        assert migrate.migrate(conn) == []
        assert migrate.check(conn).current
        tables = {
            r["tablename"] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert {
            "processing_jobs",
            "files",
            "insights",
            "job_schedules",
            "schedule_executions",
            "job_workers",
        } <= tables


def test_concurrent_migrators_do_not_race(empty_dsn: str) -> None:
    results: list[object] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        with connect(empty_dsn) as conn:
            barrier.wait()
            try:
                results.append(len(migrate.migrate(conn)))
            except Exception as exc:  # collected and asserted below
                results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results, key=str) == sorted([len(migrate.available()), 0, 0, 0], key=str)
    with connect(empty_dsn) as conn:
        rows = conn.execute("SELECT count(*) AS n FROM jobcron_migrations").fetchone()
        assert rows is not None and rows["n"] == len(migrate.available())


def test_edited_migration_is_detected(empty_dsn: str) -> None:
    with connect(empty_dsn) as conn:
        migrate.migrate(conn)
        conn.execute("UPDATE jobcron_migrations SET checksum = 'x' WHERE version = 1")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            migrate.check(conn)


def test_unknown_newer_migration_is_reported(empty_dsn: str) -> None:
    with connect(empty_dsn) as conn:
        migrate.migrate(conn)
        conn.execute("INSERT INTO jobcron_migrations (version, name, checksum) VALUES (999, 'future', 'x')")
        with pytest.raises(SchemaOutOfDate, match="upgrade jobcron"):
            migrate.check(conn)


def test_print_sql_lists_pending(empty_dsn: str) -> None:
    with connect(empty_dsn) as conn:
        text = migrate.pending_sql(conn)
        assert "-- 0001_initial.sql" in text and "CREATE TABLE processing_jobs" in text
        migrate.migrate(conn)
        assert migrate.pending_sql(conn) == ""


def test_seed_003_insert_gives_a_pending_job(conn: psycopg.Connection[dict[str, Any]]) -> None:
    file_row = conn.execute(
        "INSERT INTO files (id, file_path, original_name) VALUES (gen_random_uuid(), '/data/q3.csv', 'q3.csv') RETURNING id"
    ).fetchone()
    assert file_row is not None
    conn.execute(
        "INSERT INTO processing_jobs (file_id, business_description, job_type) VALUES (%s, %s, %s)",
        (file_row["id"], "Quarterly sales", "analysis"),
    )
    job = conn.execute("SELECT * FROM processing_jobs").fetchone()
    assert job is not None
    assert job["status"] == "pending"
    assert job["retry_count"] == 0 and job["attempts"] == 0
    assert job["metadata"] == {} and job["errors"] == []
    assert job["priority"] == 0 and job["cancel_requested"] is False
    assert job["scheduled_at"] is not None and job["created_at"] is not None
    assert job["id"] is not None and job["lease_token"] is None


def test_insert_notifies_once_per_statement(conn: psycopg.Connection[dict[str, Any]], dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN jobcron_jobs")
        conn.execute("INSERT INTO processing_jobs (job_type) SELECT 'noop' FROM generate_series(1, 500)")
        got = list(listener.notifies(timeout=1.0))
    assert len(got) == 1


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        (
            "INSERT INTO processing_jobs (job_type, status) VALUES ('noop', 'PENDING')",
            "processing_jobs_status_valid",
        ),
        (
            "INSERT INTO processing_jobs (job_type, status) VALUES ('noop', 'processing')",
            "processing_jobs_processing_has_lease",
        ),
        (
            "INSERT INTO processing_jobs (job_type, metadata) VALUES ('noop', '[1,2]')",
            "processing_jobs_metadata_object",
        ),
        (
            "INSERT INTO processing_jobs (job_type, priority) VALUES ('noop', 5000)",
            "processing_jobs_priority_range",
        ),
        (
            "INSERT INTO processing_jobs (job_type, retry_count) VALUES ('noop', -1)",
            "processing_jobs_retry_count_non_negative",
        ),
        (
            "INSERT INTO processing_jobs (job_type, max_retries) VALUES ('noop', -2)",
            "processing_jobs_max_retries_range",
        ),
        ("INSERT INTO processing_jobs (job_type) VALUES ('')", "processing_jobs_job_type_not_empty"),
        (
            "INSERT INTO processing_jobs (job_type, status) VALUES ('noop', 'completed')",
            "processing_jobs_finished_has_time",
        ),
        (
            "INSERT INTO processing_jobs (job_type, file_id) VALUES ('noop', gen_random_uuid())",
            "processing_jobs_file_id_fkey",
        ),
        (
            "INSERT INTO processing_jobs (job_type, timeout_seconds) VALUES ('noop', 0)",
            "processing_jobs_timeout_positive",
        ),
    ],
)
def test_schema_refuses_bad_rows_naming_the_constraint(
    conn: psycopg.Connection[dict[str, Any]], statement: str, constraint: str
) -> None:
    with pytest.raises(psycopg.errors.IntegrityError) as info:
        conn.execute(statement)
    assert info.value.diag.constraint_name == constraint


def test_null_job_type_is_refused(conn: psycopg.Connection[dict[str, Any]]) -> None:
    with pytest.raises(psycopg.errors.NotNullViolation, match="job_type"):
        conn.execute("INSERT INTO processing_jobs (job_type) VALUES (NULL)")


def test_job_status_matches_the_schemas_status_check(conn: psycopg.Connection[dict[str, Any]]) -> None:
    # the Python enum and the CHECK constraint are two lists of one fact: a status added to one only
    # would be refused by the database, or never recognised by the daemon
    row = conn.execute(
        "SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conname = 'processing_jobs_status_valid'"
    ).fetchone()
    assert row is not None
    in_schema = set(re.findall(r"'([a-z]+)'", row["d"]))
    assert in_schema == {s.value for s in JobStatus}
