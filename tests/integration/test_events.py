"""Migration 0003: every statement that ends an attempt or a job notifies jobcron_events once, at commit."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from jobcron import store
from jobcron.admin.jobs import cancel_job
from jobcron.config import Config
from jobcron.daemon.worker import Worker
from jobcron.models import Outcome
from tests import workflows
from tests.factories import insert_job

Conn = psycopg.Connection[dict[str, Any]]
SENTINEL = '{"sentinel": true}'


class Listener:
    """A connection LISTENing on jobcron_events, as another application would."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute("LISTEN jobcron_events")

    def payloads(self, timeout: float = 10.0) -> list[str]:
        """Every payload committed so far: a sentinel is sent last and notifications arrive in commit order."""
        with psycopg.connect(self.conn.info.dsn, password=self.conn.info.password, autocommit=True) as other:
            other.execute("SELECT pg_notify('jobcron_events', %s)", (SENTINEL,))
        got: list[str] = []
        for notify in self.conn.notifies(timeout=timeout):
            if notify.payload == SENTINEL:
                return got
            got.append(notify.payload)
        raise AssertionError(f"no sentinel within {timeout} s; got {got}")

    def events(self) -> list[dict[str, Any]]:
        """The events of every notification so far, in order."""
        return [e for p in self.payloads() for e in json.loads(p)["events"]]


@pytest.fixture
def listener(dsn: str) -> Iterator[Listener]:
    listening = Listener(dsn)
    yield listening
    listening.conn.close()


@pytest.fixture
def config(make_config: Any) -> Config:
    cfg: Config = make_config(
        workflows=workflows.ALL,
        retry={"in_process_attempts": 1, "in_process_backoff_seconds": 0.0, "durable_backoff_seconds": 5},
    )
    return cfg


def test_a_completed_job_is_one_event_and_its_claim_and_heartbeat_none(
    conn: Conn, config: Config, listener: Listener
) -> None:
    job_id = insert_job(conn, job_type="noop", user_id="u1")
    worker = Worker(config)
    claimed = worker.claim()
    assert claimed is not None and claimed.id == job_id
    assert store.heartbeat_job(conn, claimed.id, claimed.lease_token) is not None
    assert listener.payloads() == []  # the claim and the heartbeat: nothing
    worker.record(claimed, Outcome.completed({"ok": 1}, []), claim_next=False)
    assert listener.events() == [
        {"id": job_id, "status": "completed", "job_type": "noop", "user_id": "u1", "attempt": 1}
    ]


def test_failed_and_retried_attempts_are_events(conn: Conn, config: Config, listener: Listener) -> None:
    failing = insert_job(conn, job_type="permanent")
    retried = insert_job(conn, job_type="boom", max_retries=1)
    worker = Worker(config)
    assert worker.run_once() and worker.run_once()
    assert [(e["id"], e["status"], e["attempt"]) for e in listener.events()] == [
        (failing, "failed", 1),
        (retried, "pending", 1),  # back to pending with an error: a durable retry
    ]
    conn.execute("UPDATE processing_jobs SET scheduled_at = now() WHERE id = %s", (retried,))
    assert listener.payloads() == []  # a pending job rescheduled: no status change
    assert worker.run_once()
    assert [(e["status"], e["attempt"]) for e in listener.events()] == [("failed", 2)]


def test_an_operator_cancel_is_an_event(conn: Conn, listener: Listener) -> None:
    job_id = insert_job(conn, job_type="noop")
    cancel_job(conn, job_id, by="test")
    assert [(e["id"], e["status"]) for e in listener.events()] == [(job_id, "cancelled")]


def test_a_rescue_sends_its_statement_s_jobs_in_one_notification(conn: Conn, listener: Listener) -> None:
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    retried = insert_job(conn, status="processing", heartbeat_at=long_ago, started_at=long_ago)
    exhausted = insert_job(
        conn, status="processing", heartbeat_at=long_ago, started_at=long_ago, retry_count=3
    )
    rows = store.rescue_stale_jobs(
        conn,
        worker_id="rescuer",
        stale_after_seconds=60,
        max_processing_seconds=3600,
        retry_failed_jobs=True,
        default_max_retries=3,
    )
    assert len(rows) == 2
    payloads = listener.payloads()
    assert len(payloads) == 1
    got = {e["id"]: e["status"] for e in json.loads(payloads[0])["events"]}
    assert got == {retried: "pending", exhausted: "failed"}


def test_nothing_is_sent_for_a_rolled_back_write(conn: Conn, dsn: str, listener: Listener) -> None:
    job_id = insert_job(conn, job_type="noop")
    with psycopg.connect(dsn) as other:
        other.execute(
            "UPDATE processing_jobs SET status = 'completed', completed_at = now() WHERE id = %s", (job_id,)
        )
        other.rollback()
        assert listener.payloads() == []
        # the same write committed is delivered at its commit, not before
        other.execute(
            "UPDATE processing_jobs SET status = 'completed', completed_at = now() WHERE id = %s", (job_id,)
        )
        assert listener.payloads() == []
        other.commit()
    assert [e["status"] for e in listener.events()] == ["completed"]


def test_another_application_s_plain_update_notifies(conn: Conn, dsn: str, listener: Listener) -> None:
    job_id = insert_job(conn, job_type="report", user_id="app-user")
    with psycopg.connect(dsn, autocommit=True, application_name="billing-app") as app:
        app.execute("UPDATE processing_jobs SET metadata = '{\"x\": 1}' WHERE id = %s", (job_id,))
        app.execute(
            "UPDATE processing_jobs SET status = 'failed', completed_at = now(), "
            "error_message = 'given up by billing' WHERE id = %s",
            (job_id,),
        )
    assert listener.events() == [
        {"id": job_id, "status": "failed", "job_type": "report", "user_id": "app-user", "attempt": 0}
    ]


def test_a_bulk_update_is_one_overflow_summary(conn: Conn, listener: Listener) -> None:
    conn.execute("INSERT INTO processing_jobs (job_type) SELECT 'noop' FROM generate_series(1, 5000)")
    conn.execute(
        "INSERT INTO processing_jobs (job_type, status, completed_at) VALUES ('noop', 'failed', now())"
    )
    conn.execute("UPDATE processing_jobs SET status = 'cancelled', completed_at = now()")
    payloads = listener.payloads()
    assert [json.loads(p) for p in payloads] == [
        {"overflow": True, "count": 5001, "statuses": {"cancelled": 5001}}
    ]


def test_a_medium_update_is_split_under_the_payload_limit(conn: Conn, listener: Listener) -> None:
    conn.execute(
        "INSERT INTO processing_jobs (job_type, user_id) SELECT 'noop', 'u' || g FROM generate_series(1, 500) g"
    )
    conn.execute("UPDATE processing_jobs SET status = 'cancelled', completed_at = now()")
    payloads = listener.payloads()
    assert all(len(p.encode()) < 8000 for p in payloads)
    assert 6 <= len(payloads) <= 12, len(payloads)
    ids = [e["id"] for p in payloads for e in json.loads(p)["events"]]
    assert len(ids) == len(set(ids)) == 500


def test_the_largest_events_still_fit(conn: Conn, listener: Listener) -> None:
    # a job type of 100 control characters (6 bytes each in JSON), a user_id too long to be sent
    job_type = "\x01" * 100
    conn.execute(
        "INSERT INTO processing_jobs (job_type, user_id) SELECT %s, repeat('u', 300) || g FROM generate_series(1, 500) g",
        (job_type,),
    )
    conn.execute("UPDATE processing_jobs SET status = 'cancelled', completed_at = now()")
    payloads = listener.payloads()
    assert all(len(p.encode()) < 8000 for p in payloads)
    events = [e for p in payloads for e in json.loads(p)["events"]]
    assert len(events) == 500
    assert all(e["user_id"] is None and e["job_type"] == job_type for e in events)


def test_a_bulk_update_on_the_daemon_s_planner_settings_stays_fast(dsn: str, listener: Listener) -> None:
    # the worker connection turns hash joins off and plans once: a plan made for a one-row statement
    # must not be reused as a nested loop over two 10,000-row transition tables (about 12 s here,
    # against well under one with the function's own settings)
    options = (
        "-c plan_cache_mode=force_generic_plan -c enable_hashjoin=off -c enable_mergejoin=off "
        "-c enable_seqscan=off"
    )
    with psycopg.connect(dsn, autocommit=True, options=options, row_factory=dict_row) as worker:
        one = insert_job(worker, job_type="noop")
        worker.execute(
            "UPDATE processing_jobs SET status = 'cancelled', completed_at = now() WHERE id = %s", (one,)
        )
        worker.execute("INSERT INTO processing_jobs (job_type) SELECT 'noop' FROM generate_series(1, 10000)")
        began = time.monotonic()
        worker.execute(
            "UPDATE processing_jobs SET status = 'cancelled', completed_at = now() WHERE status = 'pending'"
        )
        seconds = time.monotonic() - began
    assert seconds < 5, seconds
    assert [json.loads(p).get("count") for p in listener.payloads()] == [None, 10000]


def test_a_missing_id_is_no_event(conn: Conn, listener: Listener) -> None:
    conn.execute("UPDATE processing_jobs SET status = 'completed' WHERE id = %s", (str(uuid.uuid4()),))
    assert listener.payloads() == []


def test_a_few_large_events_are_split_too(conn: Conn, listener: Listener) -> None:
    # 60 jobs (the short way, 64 rows at most) of about 700 bytes each: 42,000 bytes of events
    conn.execute(
        "INSERT INTO processing_jobs (job_type) SELECT %s FROM generate_series(1, 60)", ("\x02" * 100,)
    )
    conn.execute("UPDATE processing_jobs SET status = 'cancelled', completed_at = now()")
    payloads = listener.payloads()
    assert len(payloads) >= 6 and all(len(p.encode()) < 8000 for p in payloads)
    assert len({e["id"] for p in payloads for e in json.loads(p)["events"]}) == 60


def test_a_rolled_back_savepoint_sends_only_what_was_kept(conn: Conn, dsn: str, listener: Listener) -> None:
    kept = insert_job(conn, job_type="noop")
    undone = insert_job(conn, job_type="noop")
    finish = "UPDATE processing_jobs SET status = 'completed', completed_at = now() WHERE id = %s"
    with psycopg.connect(dsn) as other:
        other.execute(finish, (kept,))
        other.execute("SAVEPOINT s")
        other.execute(finish, (undone,))
        other.execute("ROLLBACK TO SAVEPOINT s")
        # a statement that fails half-way: nothing of it is sent
        with pytest.raises(psycopg.errors.CheckViolation), other.transaction():
            other.execute("UPDATE processing_jobs SET status = 'failed' WHERE id IN (%s, %s)", (kept, undone))
        other.commit()
    assert [e["id"] for e in listener.events()] == [kept]


def test_a_database_can_turn_the_events_off(conn: Conn, dsn: str, listener: Listener) -> None:
    job_id = insert_job(conn, job_type="noop")
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    conn.execute(f'ALTER DATABASE "{name}" SET jobcron.send_events = off')
    with psycopg.connect(dsn, autocommit=True) as quiet:
        quiet.execute(
            "UPDATE processing_jobs SET status = 'cancelled', completed_at = now() WHERE id = %s", (job_id,)
        )
        quiet.execute("SET jobcron.send_events = on")  # and a session can turn them back on
        quiet.execute(
            "UPDATE processing_jobs SET status = 'pending', completed_at = NULL WHERE id = %s", (job_id,)
        )
    assert [e["status"] for e in listener.events()] == ["pending"]
