"""The store raises jobcron's errors for rows the schema refuses, by constraint name; outages pass through."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from jobcron import store
from jobcron.errors import DuplicateKey, DuplicateName, RowRefused, SlotTaken, StoreError, UnknownReference
from jobcron.store.translate import translate
from tests.factories import insert_job

Conn = psycopg.Connection[dict[str, Any]]


def test_dedup_conflict_on_retry_is_a_duplicate_key(conn: Conn) -> None:
    old = insert_job(
        conn, job_type="noop", status="failed", completed_at="2026-01-01T00:00:00Z", dedup_key="k"
    )
    insert_job(conn, job_type="noop", dedup_key="k")
    with pytest.raises(DuplicateKey) as caught:
        store.ops_job_retry(conn, old, "test")
    assert caught.value.constraint == "processing_jobs_dedup_uniq"
    # callers not yet moved off the driver's classes decide as before
    assert isinstance(caught.value, psycopg.errors.UniqueViolation)
    assert isinstance(caught.value.__cause__, psycopg.errors.UniqueViolation)
    assert caught.value.diag.constraint_name == "processing_jobs_dedup_uniq"


def test_unknown_file_id_is_an_unknown_reference(conn: Conn) -> None:
    with pytest.raises(UnknownReference) as caught:
        store.insert_job(conn, job_type="noop", file_id=str(uuid.uuid4()))
    assert caught.value.constraint == "processing_jobs_file_id_fkey"
    assert isinstance(caught.value, psycopg.errors.ForeignKeyViolation)


def test_check_violation_is_a_row_refused(conn: Conn) -> None:
    with pytest.raises(RowRefused) as caught:
        store.insert_job(conn, job_type="noop", priority=5000)
    assert caught.value.constraint == "processing_jobs_priority_range"


def test_taken_user_slot_is_slot_taken(conn: Conn) -> None:
    insert_job(conn, job_type="noop", user_id="A", status="processing", user_slot=1)
    other = insert_job(conn, job_type="noop", user_id="A", status="processing", user_slot=2)
    with pytest.raises(SlotTaken), translate():
        conn.execute("UPDATE processing_jobs SET user_slot = 1 WHERE id = %s", (other,))


def test_duplicate_schedule_name_is_a_duplicate_name(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO job_schedules (name, job_type, kind, interval_seconds) VALUES ('n', 'noop', 'interval', 60)"
    )
    with pytest.raises(DuplicateName), translate():
        conn.execute(
            "INSERT INTO job_schedules (name, job_type, kind, interval_seconds) VALUES ('n', 'noop', 'interval', 60)"
        )


def test_outages_and_bad_values_are_not_translated(conn: Conn, dsn: str) -> None:
    with pytest.raises(psycopg.errors.DataError) as data, translate():
        conn.execute("SELECT 'x'::int")
    assert not isinstance(data.value, StoreError)
    other = psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row)
    other.close()
    with pytest.raises(psycopg.OperationalError) as outage:
        store.next_due_in(other)
    assert not isinstance(outage.value, StoreError)
