"""jobcron for asyncio applications: `enqueue`, `enqueue_many`, `get_job` and `wait` on a psycopg AsyncConnection.

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        job_id = await jobcron.aio.enqueue(conn, "analysis", user_id="u1")
        job = await jobcron.aio.wait(conn, job_id, timeout=60)

The same functions as `jobcron`'s, with the same arguments, results, errors and transaction rules;
only awaited. Nothing here is a second copy of them:

- the fields are checked by `jobcron.client`'s pure functions (`enqueue_params`, `check_rows`);
- the database work is written once, as sans-IO generators that yield steps (`jobcron.store.steps`:
  a named query, a statement, a COPY, an atomic unit) and receive their results:
  `client.enqueue_work` (the dedup retry around `store.enqueue_one_work`: the file row, then the
  job or the holder of its dedup_key), `client.enqueue_many_work` (`store.enqueue_stream_work`:
  COPY straight into the queue, through the staging table from the first row that needs it),
  `results.get_job_work` (the job, its insights), `results.wait_work` (LISTEN, read, wait for a
  mention or the poll, re-read, time out; "not committed yet" or "no such job");
- which connection state gets a transaction or a savepoint of its own is the `Atomic` step's rule
  (`steps.own_transaction`), applied by both drivers;
- `jobcron` executes the steps with `steps.run` on a `psycopg.Connection`, this module with
  `steps.arun` on an `AsyncConnection`.

What is this module's own: awaiting, and the two steps of a wait that are not SQL (until a
notification mentions the job, a read inside the caller's transaction), done with asyncio.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import aclosing
from typing import Any

import psycopg

from jobcron.client import (
    DEFAULT_MAX_METADATA_BYTES,
    check_rows,
    enqueue_many_work,
    enqueue_params,
    enqueue_work,
)
from jobcron.drivers import require_async
from jobcron.results import (
    DEFAULT_POLL_SECONDS,
    Job,
    UntilMentioned,
    WaitStep,
    get_job_work,
    in_transaction,
    listener_conninfo,
    mentions,
    stop_listening_work,
    wait_work,
)
from jobcron.store.steps import arun

__all__ = ["AsyncWaiter", "enqueue", "enqueue_many", "enqueue_one", "get_job", "wait"]


async def enqueue(
    conn: psycopg.AsyncConnection[Any],
    job_type: str,
    *,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
    **fields: Any,
) -> str:
    """Enqueue one job and return its id (with a dedup_key already pending or running: that job's id)."""
    conn = require_async(conn, "jobcron.aio.enqueue")
    params = enqueue_params({"job_type": job_type, **fields}, max_metadata_bytes)
    return (await arun(conn, enqueue_work(params)))[0]


async def enqueue_one(
    conn: psycopg.AsyncConnection[Any],
    fields: Mapping[str, Any],
    *,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
) -> tuple[str, bool]:
    """Enqueue one job: (id, created); created is False when its dedup_key was already pending or running."""
    conn = require_async(conn, "jobcron.aio.enqueue_one")
    return await arun(conn, enqueue_work(enqueue_params(fields, max_metadata_bytes)))


async def enqueue_many(
    conn: psycopg.AsyncConnection[Any],
    rows: Iterable[Mapping[str, Any]],
    *,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
) -> int:
    """Enqueue many jobs with COPY, all or nothing; how many were inserted (dedup_key repeats are skipped)."""
    conn = require_async(conn, "jobcron.aio.enqueue_many")
    return await arun(conn, enqueue_many_work(check_rows(rows, max_metadata_bytes)))


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
            await self.close()  # a server restart since the last wait: connect again
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
        """As `jobcron.results.Waiter.wait`, awaited."""
        own = await self._connection()

        async def other(step: WaitStep) -> Any:
            if isinstance(step, UntilMentioned):
                return await _until_mentioned(own, step.job_id, step.seconds)
            return await arun(self._caller, step.work) if in_transaction(self._caller) else None

        try:
            return await arun(own, wait_work(job_id, timeout, poll_seconds, insights), other)
        finally:
            if not own.broken:
                await arun(own, stop_listening_work())
                async for _ in own.notifies(timeout=0):
                    pass  # what arrived meanwhile is stale for the next wait


async def _until_mentioned(own: psycopg.AsyncConnection[Any], job_id: str, seconds: float) -> None:
    """Return when a notification may concern this job, or after seconds (the safety-net poll)."""
    # closed at once: left to the collector, the generator would hold the connection's lock meanwhile
    async with aclosing(own.notifies(timeout=seconds)) as notifies:
        async for notify in notifies:
            if mentions(notify.payload, job_id):
                return
