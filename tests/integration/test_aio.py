"""jobcron.aio on a real AsyncConnection: the sync API's rules, awaited; and the connection errors.

Each test drives its coroutine with asyncio.run: no event-loop plugin is needed.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import psycopg
import pytest

import jobcron
import jobcron.aio
from jobcron.errors import InvalidInput, JobNotFound, WaitTimeout, WrongConnection

Conn = psycopg.Connection[dict[str, Any]]


def complete_later(dsn: str, job_id: str, seconds: float) -> threading.Thread:
    """What a daemon would do: record the job completed, from another connection, after seconds."""

    def write() -> None:
        time.sleep(seconds)
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute(
                "UPDATE processing_jobs SET status = 'completed', completed_at = now(), result = '{\"n\": 1}', "
                "attempts = 1 WHERE id = %s",
                (job_id,),
            )

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_enqueue_wait_and_get_job_from_asyncio(dsn: str) -> None:
    async def app() -> tuple[str, Any, Any, float]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            job_id = await jobcron.aio.enqueue(conn, "noop", user_id="u1", metadata={"k": 1})
            thread = complete_later(dsn, job_id, 0.3)
            began = time.monotonic()
            try:
                done = await jobcron.aio.wait(conn, job_id, timeout=10, poll_seconds=5)
            finally:
                thread.join(10)
            again = await jobcron.aio.get_job(conn, job_id, insights=True)
            return job_id, done, again, time.monotonic() - began

    job_id, done, again, took = asyncio.run(app())
    assert (done.id, done.status, done.result) == (job_id, "completed", {"n": 1})
    assert again.insights == [] and again.finished
    assert took < 3  # woken by the event, not by the 5 s poll


def test_a_pending_job_is_not_finished_and_the_wait_times_out(dsn: str) -> None:
    async def app() -> WaitTimeout:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            job_id = await jobcron.aio.enqueue(conn, "noop")
            with pytest.raises(WaitTimeout) as caught:
                await jobcron.aio.wait(conn, job_id, timeout=0.3, poll_seconds=0.1)
            return caught.value

    timed_out = asyncio.run(app())
    assert isinstance(timed_out, TimeoutError) and timed_out.job.status == "pending"


def test_transaction_rules_are_the_sync_ones(dsn: str, conn: Conn) -> None:
    async def app() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        # idle, not autocommit: the insert opens the transaction; the caller decides
        async with await psycopg.AsyncConnection.connect(dsn) as c:
            gone = await jobcron.aio.enqueue(c, "noop")
            seen["left_open"] = c.info.transaction_status.name
            await c.rollback()
            seen["rolled_back"] = gone
        # inside the caller's transaction: a savepoint; a refused row leaves the transaction usable
        async with await psycopg.AsyncConnection.connect(dsn) as c:
            async with c.transaction():
                kept = await jobcron.aio.enqueue(c, "noop")
                with pytest.raises(InvalidInput):
                    await jobcron.aio.enqueue(c, "noop", priority=5000)
                seen["more"] = await jobcron.aio.enqueue_many(c, [{"job_type": "noop"}, {"job_type": "noop"}])
            seen["kept"] = kept
            with pytest.raises(JobNotFound, match="no job with id"):
                await jobcron.aio.get_job(c, "00000000-0000-0000-0000-000000000000")
        return seen

    seen = asyncio.run(app())
    assert seen["left_open"] == "INTRANS" and seen["more"] == 2
    ids = {r["id"] for r in conn.execute("SELECT id::text FROM processing_jobs").fetchall()}
    assert seen["kept"] in ids and seen["rolled_back"] not in ids and len(ids) == 3


def test_dedup_returns_the_holder_and_errors_are_the_sync_ones(dsn: str, conn: Conn) -> None:
    async def app() -> tuple[str, str, int, list[str]]:
        messages = []
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
            first = await jobcron.aio.enqueue(c, "noop", dedup_key="k")
            second = await jobcron.aio.enqueue(c, "noop", dedup_key="k")
            many = await jobcron.aio.enqueue_many(
                c, [{"job_type": "noop", "dedup_key": "k"}, {"job_type": "noop"}]
            )
            for bad in (
                {"job_type": "noop", "priority": 5000},
                {"job_type": "x y"},
                {"job_type": "noop", "nope": 1},
            ):
                with pytest.raises(InvalidInput) as caught:
                    await jobcron.aio.enqueue_many(c, [bad])
                messages.append(str(caught.value))
        return first, second, many, messages

    first, second, many, messages = asyncio.run(app())
    assert first == second and many == 1
    for bad, message in zip(
        ({"job_type": "noop", "priority": 5000}, {"job_type": "x y"}, {"job_type": "noop", "nope": 1}),
        messages,
        strict=True,
    ):
        with pytest.raises(InvalidInput) as sync:
            jobcron.enqueue_many(conn, [bad])
        assert str(sync.value) == message


def test_an_unknown_or_uncommitted_job(dsn: str) -> None:
    async def app() -> list[str]:
        said = []
        async with await psycopg.AsyncConnection.connect(dsn) as c:
            job_id = await jobcron.aio.enqueue(c, "noop")  # not committed
            with pytest.raises(JobNotFound) as caught:
                await jobcron.aio.wait(c, job_id, timeout=1)
            said.append(str(caught.value))
            await c.rollback()
        return said

    assert "not committed yet" in asyncio.run(app())[0]


def test_the_wrong_connection_gets_one_clear_error(dsn: str, conn: Conn) -> None:
    with pytest.raises(
        WrongConnection, match=re.escape("got a sync psycopg.Connection: use jobcron.enqueue")
    ):
        asyncio.run(jobcron.aio.enqueue(conn, "noop"))  # type: ignore[arg-type]
    with pytest.raises(WrongConnection, match="a connection, not a URL"):
        jobcron.enqueue(dsn, "noop")  # type: ignore[arg-type]

    async def sync_api_with_async_connection() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as c:
            with pytest.raises(WrongConnection, match=re.escape("use jobcron.aio.wait")):
                jobcron.wait(c, "00000000-0000-0000-0000-000000000000", timeout=1)  # type: ignore[arg-type]

    asyncio.run(sync_api_with_async_connection())
    assert issubclass(WrongConnection, TypeError)


def test_a_psycopg2_or_sqlalchemy_connection_is_named_with_what_to_pass_instead(dsn: str) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy", reason="the test extra installs SQLAlchemy 2")
    from tests.clientapps.sqlalchemy_app import driver_connection, engine_for

    engine = engine_for(dsn)
    try:
        with sqlalchemy.orm.Session(engine) as session:
            with pytest.raises(
                WrongConnection, match=re.escape("session.connection().connection.driver_connection")
            ):
                jobcron.enqueue(session, "noop")  # type: ignore[arg-type]
            job_id = jobcron.enqueue(driver_connection(session), "noop")  # what the message says works
            session.commit()
            assert jobcron.get_job(driver_connection(session), job_id).status == "pending"
    finally:
        engine.dispose()
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 is not installed")
    legacy = psycopg2.connect(dsn)
    try:
        with pytest.raises(WrongConnection, match="psycopg2 connections are not supported"):
            jobcron.enqueue(legacy, "noop")
    finally:
        legacy.close()
