"""jobcron.aio on a real AsyncConnection: the sync API's rules, awaited.

Each test drives its coroutine with asyncio.run: no event-loop plugin is needed. The daemon's side
is a real Worker run in a thread, or (for precise timing) a plain UPDATE from another connection,
as in test_results.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq
from psycopg.types.json import Jsonb

import jobcron
import jobcron.aio
from jobcron.config import Config
from jobcron.daemon.worker import Worker
from jobcron.errors import InvalidInput, JobNotFound, UnknownReference, WaitTimeout
from tests import workflows
from tests.factories import insert_job, status_counts
from tests.integration.test_results import COMPLETE, later

Conn = psycopg.Connection[dict[str, Any]]
AConn = psycopg.AsyncConnection[Any]
DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"
NO_JOB = "00000000-0000-0000-0000-000000000000"


@contextlib.contextmanager
def daemon(config: Config) -> Iterator[None]:
    """A real worker in a thread, claiming and recording jobs until the block ends."""
    stop = threading.Event()
    worker = Worker(config)

    def loop() -> None:
        while not stop.is_set():
            if not worker.run_once():
                stop.wait(0.02)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def aconnect(dsn: str, **kwargs: Any) -> Any:
    return psycopg.AsyncConnection.connect(dsn, **kwargs)


def test_the_docs_snippet_runs_against_a_daemon(dsn: str, make_config: Any, conn: Conn) -> None:
    found = re.search(r"<!-- snippet: aio\b.*?-->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert found, "docs/clients.md has no snippet 'aio'"
    printed: list[tuple[Any, ...]] = []
    code = compile(found.group(1), "docs/clients.md:aio", "exec")
    with daemon(make_config()):
        exec(code, {"url": dsn, "print": lambda *a: printed.append(a)})  # noqa: S102 -- the doc's own text
    assert printed and printed[0][0] == "completed"
    counts = status_counts(conn)
    assert (
        sum(counts.values()) == 7 and counts["completed"] >= 4
    )  # the enqueue_many jobs: maybe still pending


def test_wait_learns_of_the_end_from_a_real_daemon_and_reads_insights(dsn: str, make_config: Any) -> None:
    async def app() -> tuple[Any, Any]:
        async with await aconnect(dsn, autocommit=True) as c:
            job_id = await jobcron.aio.enqueue(c, "with_insights", user_id="u1", metadata={"k": 1})
            with daemon(make_config(workflows=workflows.ALL)):
                done = await jobcron.aio.wait(c, job_id, timeout=20, insights=True)
            return done, await jobcron.aio.get_job(c, job_id)

    done, again = asyncio.run(app())
    assert done.status == "completed" and done.finished and done.attempts == 1
    assert done.insights and all(isinstance(i["id"], str) for i in done.insights)
    assert again.insights is None and again == jobcron.results.Job(**{**done.__dict__, "insights": None})


def test_wait_wakes_on_the_notification_not_the_poll(dsn: str) -> None:
    async def app() -> tuple[Any, float, dict[str, float]]:
        async with await aconnect(dsn, autocommit=True) as c:
            job_id = await jobcron.aio.enqueue(c, "noop")
            with later(dsn, 0.3, COMPLETE, (Jsonb({"n": 1}), job_id)) as done:
                done_job = await jobcron.aio.wait(c, job_id, timeout=10, poll_seconds=30)
                known = time.monotonic()
            return done_job, known, done

    job, known, committed = asyncio.run(app())
    assert (job.status, job.result) == ("completed", {"n": 1})
    assert known - committed["committed"] < 1  # the event, not the 30 s poll


def test_a_pending_job_or_a_retried_one_is_not_finished(dsn: str, conn: Conn) -> None:
    retried = insert_job(conn, job_type="noop", status="processing")

    async def app() -> tuple[WaitTimeout, WaitTimeout]:
        async with await aconnect(dsn, autocommit=True) as c:
            pending = await jobcron.aio.enqueue(c, "noop")
            with pytest.raises(WaitTimeout) as first:
                await jobcron.aio.wait(c, pending, timeout=0.3, poll_seconds=0.1)
            back = "UPDATE processing_jobs SET status = 'pending', lease_token = NULL WHERE id = %s"
            with later(dsn, 0.1, back, (retried,)), pytest.raises(WaitTimeout) as second:
                await jobcron.aio.wait(c, retried, timeout=0.8, poll_seconds=30)
            return first.value, second.value

    first, second = asyncio.run(app())
    assert isinstance(first, TimeoutError) and first.job.status == "pending"
    assert second.job.status == "pending" and not second.job.finished


def test_the_poll_finds_an_end_that_was_never_notified(dsn: str, conn: Conn) -> None:
    conn.execute("ALTER TABLE processing_jobs DISABLE TRIGGER processing_jobs_notify_events")

    async def app() -> str:
        async with await aconnect(dsn, autocommit=True) as c:
            job_id = await jobcron.aio.enqueue(c, "noop")
            with later(dsn, 0.2, COMPLETE, (Jsonb(1), job_id)):
                return (await jobcron.aio.wait(c, job_id, timeout=10, poll_seconds=0.2)).status

    assert asyncio.run(app()) == "completed"


def test_an_async_waiter_keeps_one_connection_listens_only_while_waiting_and_survives_a_cancel(
    dsn: str, conn: Conn
) -> None:
    first, second = insert_job(conn, job_type="noop"), insert_job(conn, job_type="noop")

    async def app() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with await aconnect(dsn, autocommit=True) as c, jobcron.aio.AsyncWaiter(c) as waiter:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(waiter.wait(first, timeout=None, poll_seconds=30), 0.3)
            own = await waiter._connection()
            seen["listening_after_cancel"] = (await (await own.execute(LISTENING)).fetchone())[0]
            for job_id in (first, second):
                with later(dsn, 0.2, COMPLETE, (Jsonb(1), job_id)):
                    seen[job_id] = (await waiter.wait(job_id, timeout=10, poll_seconds=30)).status
            seen["listening"] = (await (await own.execute(LISTENING)).fetchone())[0]
            seen["same_connection"] = own is await waiter._connection()
        seen["closed"] = own.closed
        return seen

    seen = asyncio.run(app())
    assert seen == {
        "listening_after_cancel": 0,
        first: "completed",
        second: "completed",
        "listening": 0,
        "same_connection": True,
        "closed": True,
    }


LISTENING = "SELECT count(*) FROM pg_listening_channels()"


def test_many_waits_at_once_in_one_event_loop(dsn: str, make_config: Any) -> None:
    async def app() -> list[str]:
        async with await aconnect(dsn, autocommit=True) as c:
            ids = [await jobcron.aio.enqueue(c, "noop") for _ in range(5)]
            with daemon(make_config()):
                jobs = await asyncio.gather(*(jobcron.aio.wait(c, i, timeout=20) for i in ids))
            return [j.status for j in jobs]

    assert asyncio.run(app()) == ["completed"] * 5


# --- the transaction rules, the same as the sync API's -------------------------------------------


async def _states_async(dsn: str, enqueue: Callable[[AConn], Any]) -> dict[str, Any]:
    """What a caller sees after enqueueing in each connection state, asyncio edition."""
    seen: dict[str, Any] = {}
    async with await aconnect(dsn, autocommit=True) as c:
        await enqueue(c)
        seen["autocommit"] = c.info.transaction_status.name
    async with await aconnect(dsn) as c:
        await enqueue(c)  # idle, not autocommit: the insert opens the transaction; the caller decides
        seen["idle"] = c.info.transaction_status.name
        await c.rollback()
    async with await aconnect(dsn) as c, c.transaction():
        await c.execute("SELECT 1")
        await enqueue(c)
        seen["in_transaction"] = c.info.transaction_status.name
        raise psycopg.Rollback()
    async with await aconnect(dsn) as c:
        async with c.transaction():
            await enqueue(c)
        seen["committed_by_caller"] = c.info.transaction_status.name
    return seen


def _states_sync(dsn: str, enqueue: Callable[[psycopg.Connection[Any]], Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True) as c:
        enqueue(c)
        seen["autocommit"] = c.info.transaction_status.name
    with psycopg.connect(dsn) as c:
        enqueue(c)
        seen["idle"] = c.info.transaction_status.name
        c.rollback()
    with psycopg.connect(dsn) as c, c.transaction():
        c.execute("SELECT 1")
        enqueue(c)
        seen["in_transaction"] = c.info.transaction_status.name
        raise psycopg.Rollback()
    with psycopg.connect(dsn) as c:
        with c.transaction():
            enqueue(c)
        seen["committed_by_caller"] = c.info.transaction_status.name
    return seen


@pytest.mark.parametrize("api", ["enqueue", "enqueue_many"])
def test_each_connection_state_as_the_sync_api_and_a_rollback_removes_the_jobs(
    dsn: str, conn: Conn, api: str
) -> None:
    def rows(tag: str) -> list[dict[str, Any]]:
        return [{"job_type": "noop", "user_id": tag}, {"job_type": "noop", "user_id": tag}]

    async def one_async(c: AConn) -> None:
        if api == "enqueue":
            await jobcron.aio.enqueue(c, "noop", user_id="async")
        else:
            await jobcron.aio.enqueue_many(c, rows("async"))

    def one_sync(c: psycopg.Connection[Any]) -> None:
        if api == "enqueue":
            jobcron.enqueue(c, "noop", user_id="sync")
        else:
            jobcron.enqueue_many(c, rows("sync"))

    seen_async = asyncio.run(_states_async(dsn, one_async))
    seen_sync = _states_sync(dsn, one_sync)
    assert (
        seen_async
        == seen_sync
        == {
            "autocommit": "IDLE",  # its own short transaction, committed
            "idle": "INTRANS",  # left open for the caller
            "in_transaction": "INTRANS",  # a savepoint in the caller's transaction
            "committed_by_caller": "IDLE",
        }
    )
    per_state = 1 if api == "enqueue" else 2
    counts = conn.execute(
        "SELECT user_id, count(*) AS n FROM processing_jobs GROUP BY user_id ORDER BY user_id"
    ).fetchall()
    # autocommit and the caller's commit kept theirs; the two rollbacks removed theirs
    assert counts == [{"user_id": "async", "n": 2 * per_state}, {"user_id": "sync", "n": 2 * per_state}]


def test_a_refused_row_rolls_back_its_savepoint_only(dsn: str, conn: Conn) -> None:
    async def app() -> str:
        async with await aconnect(dsn) as c:
            async with c.transaction():
                kept = await jobcron.aio.enqueue(c, "noop", user_id="kept")
                with pytest.raises(UnknownReference):
                    await jobcron.aio.enqueue(c, "noop", file_id="00000000-0000-4000-8000-000000000000")
                with pytest.raises(UnknownReference):
                    await jobcron.aio.enqueue_many(
                        c, [{"job_type": "noop"}, {"job_type": "noop", "file_id": NO_JOB}]
                    )
                await jobcron.aio.enqueue_many(c, [{"job_type": "noop", "user_id": "kept"}])  # still usable
            return kept

    kept = asyncio.run(app())
    assert status_counts(conn) == {"pending": 2}
    assert jobcron.get_job(conn, kept).status == "pending"


def test_get_job_runs_inside_the_caller_s_transaction_and_leaves_it_open(dsn: str) -> None:
    async def app() -> list[str]:
        async with await aconnect(dsn) as c:
            job_id = await jobcron.aio.enqueue(c, "noop")  # not committed: only this transaction sees it
            status = (await jobcron.aio.get_job(c, job_id)).status
            left = c.info.transaction_status
            await c.commit()
            await jobcron.aio.get_job(c, job_id)
            return [status, left.name, c.info.transaction_status.name]

    assert asyncio.run(app()) == ["pending", "INTRANS", "INTRANS"]


def test_wait_leaves_the_caller_s_transaction_alone_and_says_not_committed_yet(dsn: str) -> None:
    async def app() -> list[Any]:
        said: list[Any] = []
        async with await aconnect(dsn) as c:
            job_id = await jobcron.aio.enqueue(c, "noop")
            with pytest.raises(JobNotFound, match="not committed yet"):
                await jobcron.aio.wait(c, job_id, timeout=1)
            said.append(c.info.transaction_status)
            await c.commit()
            with pytest.raises(JobNotFound, match="no job with id"):
                await jobcron.aio.wait(c, NO_JOB, timeout=1)
            said.append(c.info.transaction_status)  # idle: wait did not open a transaction on it
            await c.execute("SELECT 1")
            with later(dsn, 0.2, COMPLETE, (Jsonb(1), job_id)):
                said.append((await jobcron.aio.wait(c, job_id, timeout=10, poll_seconds=30)).status)
            said.append(c.info.transaction_status)
            await c.rollback()
        return said

    T = pq.TransactionStatus
    assert asyncio.run(app()) == [T.INTRANS, T.IDLE, "completed", T.INTRANS]


# --- the same results and errors as the sync API ------------------------------------------------


def test_dedup_returns_the_holder_and_files_are_registered(dsn: str, conn: Conn) -> None:
    async def app() -> tuple[str, str, tuple[str, bool], int, str]:
        async with await aconnect(dsn, autocommit=True) as c:
            first = await jobcron.aio.enqueue(c, "noop", dedup_key="k")
            second = await jobcron.aio.enqueue(c, "noop", dedup_key="k")
            told = await jobcron.aio.enqueue_one(c, {"job_type": "noop", "dedup_key": "k"})
            many = await jobcron.aio.enqueue_many(
                c,
                [
                    {"job_type": "noop", "dedup_key": "k"},
                    {"job_type": "noop"},
                    {"job_type": "noop", "file_path": "/data/q3.csv"},
                ],
            )
            with_file = await jobcron.aio.enqueue(c, "noop", file_path="/data/q4.csv")
        return first, second, told, many, with_file

    first, second, told, many, with_file = asyncio.run(app())
    assert first == second and told == (first, False) and many == 2
    files = conn.execute(
        "SELECT f.original_name FROM files f JOIN processing_jobs j ON j.file_id = f.id ORDER BY 1"
    ).fetchall()
    assert [f["original_name"] for f in files] == ["q3.csv", "q4.csv"]
    assert jobcron.get_job(conn, with_file).status == "pending"


BAD: list[dict[str, Any]] = [
    {"job_type": "noop", "priority": 5000},
    {"job_type": "x y"},
    {"job_type": "noop", "nope": 1},
    {"job_type": "noop", "metadata": [1]},
    {"job_type": "noop", "run_at": "2026-01-01T00:00:00"},
    {"job_type": "noop", "file_id": "x", "file_path": "/a"},
]


def test_bad_input_gives_the_sync_api_s_message(dsn: str, conn: Conn) -> None:
    async def app() -> list[str]:
        messages = []
        async with await aconnect(dsn, autocommit=True) as c:
            for bad in BAD:
                for call in (
                    lambda b=bad: jobcron.aio.enqueue(c, **b),
                    lambda b=bad: jobcron.aio.enqueue_many(c, [{"job_type": "noop"}, b]),
                ):
                    with pytest.raises(InvalidInput) as caught:
                        await call()
                    messages.append(str(caught.value))
            for bad_read in (
                jobcron.aio.get_job(c, "nope"),
                jobcron.aio.wait(c, "nope", timeout=1),
                jobcron.aio.wait(c, NO_JOB, timeout=1, poll_seconds=0),
            ):
                with pytest.raises(InvalidInput) as caught:
                    await bad_read
                messages.append(str(caught.value))
            with pytest.raises(JobNotFound) as missing:
                await jobcron.aio.get_job(c, NO_JOB)
            messages.append(str(missing.value))
        return messages

    expected = []
    for bad in BAD:
        for sync_call in (
            lambda b=bad: jobcron.enqueue(conn, **b),
            lambda b=bad: jobcron.enqueue_many(conn, [{"job_type": "noop"}, b]),
        ):
            with pytest.raises(InvalidInput) as caught:
                sync_call()
            expected.append(str(caught.value))
    for sync_read in (
        lambda: jobcron.get_job(conn, "nope"),
        lambda: jobcron.wait(conn, "nope", timeout=1),
        lambda: jobcron.wait(conn, NO_JOB, timeout=1, poll_seconds=0),
    ):
        with pytest.raises(InvalidInput) as caught:
            sync_read()
        expected.append(str(caught.value))
    with pytest.raises(JobNotFound) as missing:
        jobcron.get_job(conn, NO_JOB)
    expected.append(str(missing.value))
    assert asyncio.run(app()) == expected
    assert expected[1].startswith("rows[1]: priority:")
    assert status_counts(conn) == {}  # nothing reached the database
