"""Results for the caller: `get_job` reads a job back, `wait` waits for it to finish.

`wait` LISTENs on `jobcron_events` (migration 0003 notifies it when a statement moves a job to a
final status or back to pending) and re-reads the row when an event names the job, with a poll
every `poll_seconds` as a safety net for a notification that never comes (a listener connection
that dropped, a server restart). It never uses the caller's connection for that: LISTEN inside an
open transaction only takes effect at its commit, notifications are only delivered between
transactions, and a REPEATABLE READ snapshot would never see the job finish. So it opens a
connection of its own from `conn.info` (same server, database, role and password), in autocommit,
and closes it before returning. The caller's transaction is never touched.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from jobcron import store
from jobcron.drivers import require_sync
from jobcron.errors import InvalidInput, JobNotFound, WaitTimeout
from jobcron.models import FINAL_STATUSES
from jobcron.store.steps import Exec, Step, Work, run

CHANNEL = "jobcron_events"
DEFAULT_POLL_SECONDS = 1.0
_FINAL = frozenset(str(s) for s in FINAL_STATUSES)


@dataclass(frozen=True)
class Job:
    """A job as its caller sees it; `result` and `insights` are what a completed job produced."""

    id: str
    job_type: str
    status: str
    result: Any
    error_message: str | None
    attempts: int
    retry_count: int
    max_retries: int | None
    created_at: datetime | None
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    insights: list[dict[str, Any]] | None = None

    @property
    def finished(self) -> bool:
        """completed, failed or cancelled: nothing will change it any more (a pending retry is not)."""
        return self.status in _FINAL

    @property
    def finished_at(self) -> datetime | None:
        """When it finished (`completed_at` is set for every final status)."""
        return self.completed_at if self.finished else None


def _job_id(job_id: Any) -> str:
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise InvalidInput(f"id: not a UUID: {str(job_id)[:60]!r}") from None


def _job(found: tuple[dict[str, Any], list[dict[str, Any]] | None] | None) -> Job | None:
    if found is None:
        return None
    row, insights = found
    return Job(
        id=str(row["id"]),
        job_type=row["job_type"],
        status=row["status"],
        result=row["result"],
        error_message=row["error_message"],
        attempts=row["attempts"],
        retry_count=row["retry_count"],
        max_retries=row["max_retries"],
        created_at=row["created_at"],
        scheduled_at=row["scheduled_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        insights=None if insights is None else [{**r, "id": str(r["id"])} for r in insights],
    )


def read_work(job_id: str, insights: bool) -> Work[Job | None]:
    """The job as it stands (None: no such job), as steps for either driver."""
    return _job((yield from store.read_result_work(job_id, insights)))


def get_job_work(job_id: Any, insights: bool) -> Work[Job]:
    """get_job's steps: the job, or JobNotFound."""
    found = yield from read_work(_job_id(job_id), insights)
    if found is None:
        raise JobNotFound(f"no job with id {job_id}")
    return found


def get_job(conn: psycopg.Connection[Any], job_id: Any, *, insights: bool = False) -> Job:
    """The job with this id as it stands now; JobNotFound when there is none (or retention pruned it).

    Runs on the caller's connection and inside its transaction if one is open (an idle
    non-autocommit connection is left in the transaction the SELECT opened, as `enqueue` does).
    """
    require_sync(conn, "jobcron.get_job")
    return run(conn, get_job_work(job_id, insights))


def listener_conninfo(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> str:
    """The caller's connection parameters, password included, for a connection of wait()'s own."""
    params: dict[str, Any] = {"application_name": "jobcron:wait"}  # sync or async: conn.info is alike
    if conn.info.password:
        params["password"] = conn.info.password
    return make_conninfo(conn.info.dsn, **params)


def wait(
    conn: psycopg.Connection[Any],
    job_id: Any,
    *,
    timeout: float | None,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    insights: bool = False,
) -> Job:
    """The job once it is completed, failed or cancelled; WaitTimeout (a TimeoutError) after timeout seconds.

    timeout None waits for good. A pending job, including one sent back for a retry, is not finished.
    JobNotFound: no such job, or it is not committed yet (commit the enqueue before waiting).
    Opens (and closes) a connection of its own per call; `Waiter` keeps one for many waits.
    """
    with Waiter(require_sync(conn, "jobcron.wait")) as waiter:
        return waiter.wait(job_id, timeout=timeout, poll_seconds=poll_seconds, insights=insights)


@dataclass(frozen=True)
class UntilMentioned:
    """A wait's step: return when a notification may concern the job, or after seconds."""

    job_id: str
    seconds: float


@dataclass(frozen=True)
class InCallersTransaction:
    """A wait's step: run `work` on the caller's connection if a transaction is open there, else answer None.

    Only inside the caller's transaction can a job be there that the wait's own connection cannot
    see; and a read on an idle connection that is not autocommit would open a transaction on it.
    """

    work: Work[Any]


WaitStep = UntilMentioned | InCallersTransaction


def wait_work(
    job_id: Any, timeout: float | None, poll_seconds: float, insights: bool
) -> Generator[Step | WaitStep, Any, Job]:
    """What every wait does, as steps on the wait's own connection (and UntilMentioned, InCallersTransaction).

    LISTEN before the first read: an ending committed from then on is notified, one committed before
    is seen by that read. Then re-read whenever an event may concern the job, and every poll_seconds.
    """
    job_id = _job_id(job_id)
    if poll_seconds <= 0:
        raise InvalidInput(f"poll_seconds: must be positive, got {poll_seconds}")
    deadline = None if timeout is None else time.monotonic() + timeout
    yield Exec("wait_listen")
    job = yield from read_work(job_id, insights)
    if job is None:
        if (yield InCallersTransaction(read_work(job_id, False))) is not None:
            raise JobNotFound(
                f"job {job_id} is not committed yet: commit the transaction that enqueued it, then wait"
            )
        raise JobNotFound(f"no job with id {job_id}")
    while not job.finished:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise WaitTimeout(f"job {job_id} not finished within {timeout} s (status {job.status})", job)
        yield UntilMentioned(job_id, poll_seconds if left is None else min(left, poll_seconds))
        job = yield from read_work(job_id, insights)
        if job is None:
            raise JobNotFound(f"job {job_id} was deleted while waiting for it")
    return job


def in_transaction(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether a transaction is open on conn (what InCallersTransaction asks)."""
    return conn.info.transaction_status == pq.TransactionStatus.INTRANS


class Waiter:
    """One listening connection, built from the caller's, for waiting on many jobs one after another.

    `with jobcron.results.Waiter(conn) as w: w.wait(a, timeout=5); w.wait(b, timeout=5)` saves the
    connection set-up of each `jobcron.wait`. It LISTENs only while a wait runs: a connection that
    listened and went unread would hold back PostgreSQL's notification queue for every session.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._caller = require_sync(conn, "jobcron.results.Waiter")
        self._conninfo = listener_conninfo(conn)
        self._own: psycopg.Connection[Any] | None = None

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the listening connection."""
        if self._own is not None:
            self._own.close()
            self._own = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._own is not None and self._own.broken:
            self.close()  # a server restart since the last wait: connect again
        if self._own is None:
            self._own = psycopg.connect(self._conninfo, autocommit=True)
        return self._own

    def wait(
        self,
        job_id: Any,
        *,
        timeout: float | None,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        insights: bool = False,
    ) -> Job:
        """As `jobcron.wait`, on this waiter's connection."""
        own = self._connection()

        def other(step: WaitStep) -> Any:
            if isinstance(step, UntilMentioned):
                return _until_mentioned(own, step.job_id, step.seconds)
            return run(self._caller, step.work) if in_transaction(self._caller) else None

        try:
            return run(own, wait_work(job_id, timeout, poll_seconds, insights), other)
        finally:
            if not own.broken:
                run(own, stop_listening_work())
                for _ in own.notifies(timeout=0):
                    pass  # what arrived meanwhile is stale for the next wait


def stop_listening_work() -> Work[None]:
    """UNLISTEN at the end of a wait, however it ended."""
    yield Exec("wait_unlisten")


def _until_mentioned(own: psycopg.Connection[Any], job_id: str, seconds: float) -> None:
    """Return when a notification may concern this job, or after seconds (the safety-net poll)."""
    # closed at once, not when collected: the generator holds the connection's lock until it ends
    with closing(own.notifies(timeout=seconds)) as notifies:
        for notify in notifies:
            if mentions(notify.payload, job_id):
                return


def mentions(payload: str, job_id: str) -> bool:
    """Whether a jobcron_events payload may concern this job: it names it, or it is an overflow summary."""
    try:
        message = json.loads(payload)
    except ValueError:
        return True  # not ours to judge: look at the row
    if not isinstance(message, dict):
        return True
    if message.get("overflow"):
        return True
    events = message.get("events")
    if not isinstance(events, list):
        return True
    return any(isinstance(e, dict) and e.get("id") == job_id for e in events)


__all__ = [
    "CHANNEL",
    "InCallersTransaction",
    "Job",
    "UntilMentioned",
    "Waiter",
    "get_job",
    "get_job_work",
    "in_transaction",
    "listener_conninfo",
    "mentions",
    "read_work",
    "stop_listening_work",
    "wait",
    "wait_work",
]
