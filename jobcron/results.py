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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from jobcron import store
from jobcron.errors import InvalidInput, JobCronError, JobNotFound, WaitTimeout
from jobcron.models import FINAL_STATUSES

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


def _read(conn: psycopg.Connection[Any], job_id: str, insights: bool) -> Job | None:
    row = store.result_job(conn, job_id)
    if row is None:
        return None
    found = store.result_insights(conn, job_id) if insights else None
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
        insights=None if found is None else [{**r, "id": str(r["id"])} for r in found],
    )


def get_job(conn: psycopg.Connection[Any], job_id: Any, *, insights: bool = False) -> Job:
    """The job with this id as it stands now; JobNotFound when there is none (or retention pruned it).

    Runs on the caller's connection and inside its transaction if one is open (an idle
    non-autocommit connection is left in the transaction the SELECT opened, as `enqueue` does).
    """
    found = _read(conn, _job_id(job_id), insights)
    if found is None:
        raise JobNotFound(f"no job with id {job_id}")
    return found


def listener_conninfo(conn: psycopg.Connection[Any]) -> str:
    """The caller's connection parameters, password included, for a connection of wait()'s own."""
    params: dict[str, Any] = {"application_name": "jobcron:wait"}
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
    with Waiter(conn) as waiter:
        return waiter.wait(job_id, timeout=timeout, poll_seconds=poll_seconds, insights=insights)


class Waiter:
    """One listening connection, built from the caller's, for waiting on many jobs one after another.

    `with jobcron.results.Waiter(conn) as w: w.wait(a, timeout=5); w.wait(b, timeout=5)` saves the
    connection set-up of each `jobcron.wait`. It LISTENs only while a wait runs: a connection that
    listened and went unread would hold back PostgreSQL's notification queue for every session.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._caller = conn
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
        job_id = _job_id(job_id)
        if poll_seconds <= 0:
            raise InvalidInput(f"poll_seconds: must be positive, got {poll_seconds}")
        deadline = None if timeout is None else time.monotonic() + timeout
        own = self._connection()
        own.execute("LISTEN jobcron_events")
        try:
            # read after LISTEN: an ending committed from here on is notified, one before it is seen here
            job = _read(own, job_id, insights)
            if job is None:
                raise _not_found(self._caller, job_id)
            while not job.finished:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise WaitTimeout(
                        f"job {job_id} not finished within {timeout} s (status {job.status})", job
                    )
                _until_mentioned(own, job_id, poll_seconds if left is None else min(left, poll_seconds))
                job = _read(own, job_id, insights)
                if job is None:
                    raise JobNotFound(f"job {job_id} was deleted while waiting for it")
            return job
        finally:
            if not own.broken:
                own.execute("UNLISTEN jobcron_events")
                for _ in own.notifies(timeout=0):
                    pass  # what arrived meanwhile is stale for the next wait


def _until_mentioned(own: psycopg.Connection[Any], job_id: str, seconds: float) -> None:
    """Return when a notification may concern this job, or after seconds (the safety-net poll)."""
    for notify in own.notifies(timeout=seconds):
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


def _not_found(conn: psycopg.Connection[Any], job_id: str) -> JobCronError:
    """JobNotFound, saying so when the job exists only in the caller's uncommitted transaction."""
    if conn.info.transaction_status == pq.TransactionStatus.INTRANS and _read(conn, job_id, False):
        return JobNotFound(
            f"job {job_id} is not committed yet: commit the transaction that enqueued it, then wait"
        )
    return JobNotFound(f"no job with id {job_id}")


__all__ = ["CHANNEL", "Job", "Waiter", "get_job", "mentions", "wait"]
