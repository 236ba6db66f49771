"""jobcron for asyncio applications: `enqueue`, `enqueue_many`, `get_job` and `wait` on a psycopg AsyncConnection.

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        job_id = await jobcron.aio.enqueue(conn, "analysis", user_id="u1")
        job = await jobcron.aio.wait(conn, job_id, timeout=60)

The same functions as `jobcron`'s, with the same arguments, results, errors and transaction rules;
only awaited. Nothing here is a second copy of them: the fields are checked by `jobcron.client`'s
functions, the statements and what is made of their results are the generators of
`jobcron.store.steps` (`enqueue_one_work`, `enqueue_stream_work`, `get_job_work`), and a wait is
`jobcron.results.wait_work`, all run here by the async driver `arun` where the sync API runs them
with `run`. What is this module's own: awaiting, and the async LISTEN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

import psycopg
from psycopg import pq

from jobcron import store
from jobcron.client import (
    DEDUP_ATTEMPTS,
    DEFAULT_MAX_METADATA_BYTES,
    check_rows,
    dedup_unresolved,
    enqueue_many_work,
    enqueue_params,
    own_transaction,
)
from jobcron.drivers import require_async
from jobcron.results import (
    DEFAULT_POLL_SECONDS,
    Job,
    ReadJob,
    get_job_work,
    listener_conninfo,
    mentions,
    not_found_work,
    read_work,
    wait_work,
)
from jobcron.store.steps import arun

__all__ = ["AsyncWaiter", "enqueue", "enqueue_many", "enqueue_one", "get_job", "wait"]


def _atomic(conn: psycopg.AsyncConnection[Any]) -> AbstractAsyncContextManager[Any]:
    """As jobcron.client's: a transaction or savepoint of its own only where the rule says so."""
    if own_transaction(conn.autocommit, conn.info.transaction_status):
        return conn.transaction()
    return nullcontext()


async def enqueue(
    conn: psycopg.AsyncConnection[Any],
    job_type: str,
    *,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
    **fields: Any,
) -> str:
    """Enqueue one job and return its id (with a dedup_key already pending or running: that job's id)."""
    found = await enqueue_one(conn, {"job_type": job_type, **fields}, max_metadata_bytes=max_metadata_bytes)
    return found[0]


async def enqueue_one(
    conn: psycopg.AsyncConnection[Any],
    fields: Mapping[str, Any],
    *,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
) -> tuple[str, bool]:
    """Enqueue one job: (id, created); created is False when its dedup_key was already pending or running."""
    conn = require_async(conn, "jobcron.aio.enqueue")
    params = enqueue_params(fields, max_metadata_bytes)
    for _ in range(DEDUP_ATTEMPTS):
        async with _atomic(conn):
            found = await arun(conn, store.enqueue_one_work(params))
        if found is not None:
            return found
    raise dedup_unresolved(params)


async def enqueue_many(
    conn: psycopg.AsyncConnection[Any],
    rows: Iterable[Mapping[str, Any]],
    *,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
) -> int:
    """Enqueue many jobs with COPY, all or nothing; how many were inserted (dedup_key repeats are skipped)."""
    conn = require_async(conn, "jobcron.aio.enqueue_many")
    checked = check_rows(rows, max_metadata_bytes)
    if not checked:
        return 0
    async with _atomic(conn):
        inserted, _ = await arun(conn, enqueue_many_work(checked))
    return inserted


async def get_job(conn: psycopg.AsyncConnection[Any], job_id: Any, *, insights: bool = False) -> Job:
    """The job with this id as it stands now; JobNotFound when there is none (or retention pruned it)."""
    return await arun(require_async(conn, "jobcron.aio.get_job"), get_job_work(job_id, insights))


async def wait(
    conn: psycopg.AsyncConnection[Any],
    job_id: Any,
    *,
    timeout: float | None,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    insights: bool = False,
) -> Job:
    """The job once it is completed, failed or cancelled; WaitTimeout (a TimeoutError) after timeout seconds.

    As jobcron.wait: on a connection of its own built from conn.info, opened and closed per call.
    """
    async with AsyncWaiter(require_async(conn, "jobcron.aio.wait")) as waiter:
        return await waiter.wait(job_id, timeout=timeout, poll_seconds=poll_seconds, insights=insights)


class AsyncWaiter:
    """jobcron.results.Waiter for asyncio: one listening connection kept for many waits."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._caller = require_async(conn, "jobcron.aio.AsyncWaiter")
        self._conninfo = listener_conninfo(conn)
        self._own: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> AsyncWaiter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the listening connection."""
        if self._own is not None:
            await self._own.close()
            self._own = None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._own is not None and self._own.broken:
            await self.close()
        if self._own is None:
            self._own = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        return self._own

    async def wait(
        self,
        job_id: Any,
        *,
        timeout: float | None,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        insights: bool = False,
    ) -> Job:
        """As `jobcron.wait`, on this waiter's connection."""
        work = wait_work(job_id, timeout, poll_seconds, insights)
        own = await self._connection()
        await own.execute("LISTEN jobcron_events")
        try:
            answer: Any = None
            while True:
                step = work.send(answer)
                if isinstance(step, ReadJob):
                    answer = await arun(own, read_work(step.job_id, step.insights))
                else:
                    async for notify in own.notifies(timeout=step.seconds):
                        if mentions(notify.payload, step.job_id):
                            break
                    answer = None
        except StopIteration as done:
            if done.value is None:
                in_tx = self._caller.info.transaction_status == pq.TransactionStatus.INTRANS
                raise await arun(self._caller, not_found_work(job_id, in_tx)) from None
            return done.value  # type: ignore[no-any-return]
        finally:
            if not own.broken:
                await own.execute("UNLISTEN jobcron_events")
                async for _ in own.notifies(timeout=0):
                    pass  # what arrived meanwhile is stale for the next wait
