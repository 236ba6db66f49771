"""jobcron.get_job and jobcron.wait against a real database; the daemon's side is faked by plain UPDATEs."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import pq
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

import jobcron
from jobcron.errors import InvalidInput, JobNotFound, WaitTimeout
from jobcron.results import Waiter, listener_conninfo
from tests.factories import insert_job

Conn = psycopg.Connection[dict[str, Any]]
COMPLETE = (
    "UPDATE processing_jobs SET status = 'completed', completed_at = now(), result = %s, attempts = 1 "
    "WHERE id = %s RETURNING clock_timestamp() AS at"
)


@contextlib.contextmanager
def later(dsn: str, seconds: float, query: str, params: tuple[Any, ...]) -> Iterator[dict[str, float]]:
    """Run a write from another connection after `seconds`; yields where the time of its commit will be put."""
    done: dict[str, float] = {}

    def write() -> None:
        time.sleep(seconds)
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute(query, params)
        done["committed"] = time.monotonic()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        yield done
    finally:
        thread.join(10)


def test_get_job_reads_a_finished_job_with_its_result_and_insights(conn: Conn) -> None:
    job_id = insert_job(conn, job_type="noop", status="completed", completed_at="now()", result={"n": 3})
    conn.execute(
        "INSERT INTO insights (job_id, insight_type, content, confidence_score) VALUES (%s, 'summary', %s, 0.5)",
        (job_id, Jsonb({"text": "hi"})),
    )
    found = jobcron.get_job(conn, job_id, insights=True)
    assert (found.id, found.status, found.result, found.finished) == (job_id, "completed", {"n": 3}, True)
    assert found.finished_at == found.completed_at is not None
    assert found.insights is not None and [i["content"] for i in found.insights] == [{"text": "hi"}]
    assert jobcron.get_job(conn, job_id).insights is None


def test_get_job_of_an_unknown_or_malformed_id(conn: Conn) -> None:
    with pytest.raises(JobNotFound):
        jobcron.get_job(conn, uuid.uuid4())
    with pytest.raises(InvalidInput, match="not a UUID"):
        jobcron.get_job(conn, "42")


def test_wait_on_an_unknown_id(conn: Conn) -> None:
    with pytest.raises(JobNotFound):
        jobcron.wait(conn, str(uuid.uuid4()), timeout=1)


def test_wait_times_out_on_a_pending_job_and_a_retried_one(conn: Conn) -> None:
    pending = insert_job(conn, job_type="noop")
    retried = insert_job(conn, job_type="noop", attempts=1, retry_count=1, error_message="boom")
    for job_id in (pending, retried):
        began = time.monotonic()
        with pytest.raises(WaitTimeout) as caught:
            jobcron.wait(conn, job_id, timeout=0.3, poll_seconds=0.1)
        assert 0.3 <= time.monotonic() - began < 2
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.job is not None and caught.value.job.status == "pending"


def test_wait_returns_a_finished_job_at_once(conn: Conn) -> None:
    job_id = insert_job(conn, job_type="noop", status="failed", completed_at="now()", error_message="no")
    found = jobcron.wait(conn, job_id, timeout=0)
    assert (found.status, found.error_message) == ("failed", "no")


def test_wait_wakes_on_the_notification_not_the_poll(conn: Conn, dsn: str) -> None:
    job_id = insert_job(conn, job_type="noop")
    with later(dsn, 0.5, COMPLETE, (Jsonb({"ok": True}), job_id)) as done:
        found = jobcron.wait(conn, job_id, timeout=10, poll_seconds=30)
        returned = time.monotonic()
    assert found.status == "completed" and found.result == {"ok": True} and found.attempts == 1
    assert returned - done["committed"] < 0.2


def test_wait_is_not_fooled_by_a_retry_and_other_jobs_events(conn: Conn, dsn: str) -> None:
    job_id = insert_job(conn, job_type="noop", status="processing")
    other = insert_job(conn, job_type="noop")
    conn.execute(
        "UPDATE processing_jobs SET status = 'cancelled', completed_at = now() WHERE id = %s", (other,)
    )
    conn.execute(
        "UPDATE processing_jobs SET status = 'pending', lease_token = NULL, error_message = 'x' WHERE id = %s",
        (job_id,),
    )
    with later(dsn, 0.4, COMPLETE, (Jsonb(1), job_id)):
        assert jobcron.wait(conn, job_id, timeout=10, poll_seconds=30).status == "completed"


def test_the_poll_finds_a_job_whose_notification_never_came(conn: Conn, dsn: str) -> None:
    conn.execute("ALTER TABLE processing_jobs DISABLE TRIGGER processing_jobs_collect_events")
    conn.execute("ALTER TABLE processing_jobs DISABLE TRIGGER processing_jobs_notify_events")
    job_id = insert_job(conn, job_type="noop")
    with later(dsn, 0.3, COMPLETE, (Jsonb(1), job_id)):
        began = time.monotonic()
        assert jobcron.wait(conn, job_id, timeout=10, poll_seconds=0.2).status == "completed"
    assert time.monotonic() - began < 2


def test_wait_leaves_the_caller_s_transaction_alone(dsn: str) -> None:
    with psycopg.connect(dsn, row_factory=dict_row) as caller:  # not autocommit
        job_id = jobcron.enqueue(caller, "noop")
        with pytest.raises(JobNotFound, match="not committed yet"):
            jobcron.wait(caller, job_id, timeout=1)
        assert caller.info.transaction_status == pq.TransactionStatus.INTRANS
        caller.commit()
        caller.execute("SELECT 1")  # a transaction of the caller's, open while it waits
        with later(dsn, 0.3, COMPLETE, (Jsonb(1), job_id)):
            assert jobcron.wait(caller, job_id, timeout=10, poll_seconds=30).status == "completed"
        assert caller.info.transaction_status == pq.TransactionStatus.INTRANS
        caller.rollback()


def test_wait_connects_as_the_caller_s_role_with_its_password(conn: Conn, dsn: str) -> None:
    role = f"jobcron_wait_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'sesame'")
    conn.execute(f"GRANT SELECT ON processing_jobs, insights TO {role}")
    try:
        job_id = insert_job(conn, job_type="noop", status="cancelled", completed_at="now()")
        app_dsn = psycopg.conninfo.make_conninfo(dsn, user=role, password="sesame")
        with psycopg.connect(app_dsn) as app:
            assert "sesame" in listener_conninfo(app)
            assert jobcron.wait(app, job_id, timeout=5).status == "cancelled"
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_a_waiter_keeps_one_connection_and_listens_only_while_waiting(conn: Conn, dsn: str) -> None:
    first = insert_job(conn, job_type="noop")
    second = insert_job(conn, job_type="noop")
    with Waiter(conn) as waiter:
        for job_id in (first, second):
            with later(dsn, 0.3, COMPLETE, (Jsonb(1), job_id)):
                assert waiter.wait(job_id, timeout=10, poll_seconds=30).status == "completed"
        rows = conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'jobcron:wait'"
        ).fetchone()
        assert rows is not None and rows["n"] == 1
        own = waiter._connection()
        assert own.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)
