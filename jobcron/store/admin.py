"""The operator commands' reads and writes: status, jobs, workers, pauses (sql/admin.sql).

Times Python cannot hold ('infinity', year 10000) are read as PostgreSQL's text here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jobcron.db import Connection
from jobcron.sql import sql
from jobcron.store import _all, _cursor, _one
from jobcron.store.jobs import db_now, delete_finished_batch, notify_jobs

__all__ = [
    "ops_clock",
    "ops_finished_by_minute",
    "ops_finished_counts",
    "ops_job_cancel",
    "ops_job_insights",
    "ops_job_relatives",
    "ops_job_retry",
    "ops_job_show",
    "ops_job_state",
    "ops_jobs_list",
    "ops_pause",
    "ops_purge_batch",
    "ops_purge_count",
    "ops_queue_sample",
    "ops_reset_stale",
    "ops_resume",
    "ops_stale_jobs",
    "ops_status_rows",
    "ops_workers",
]


def ops_status_rows(
    conn: Connection, queries: Sequence[tuple[str, dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """Run read-only queries in one snapshot and one round trip; rows by query name."""
    with conn.transaction():
        conn.execute(sql("ops_read_only_snapshot"))
        with conn.pipeline():
            cursors = []
            for name, params in queries:
                cur = _cursor(conn, lenient_times=True)
                cur.execute(sql(name), params)
                cursors.append((name, cur))
        return {name: cur.fetchall() for name, cur in cursors}


def ops_finished_counts(conn: Connection) -> dict[str, int]:
    """Exact counts of finished jobs per status (a full scan)."""
    return {r["status"]: int(r["n"]) for r in _all(conn, "ops_finished_counts", lenient_times=True)}


def ops_workers(conn: Connection, dead_after_seconds: float) -> list[dict[str, Any]]:
    """Every daemon row with alive/dead and the job it runs."""
    return _all(conn, "ops_workers", {"dead_after_seconds": float(dead_after_seconds)}, lenient_times=True)


def ops_finished_by_minute(conn: Connection, minutes: int) -> list[dict[str, Any]]:
    """Completed and failed jobs per minute of the last `minutes`: rows {minutes_ago, completed, failed}."""
    return _all(conn, "ops_finished_by_minute", {"minutes": minutes})


def ops_jobs_list(
    conn: Connection,
    *,
    statuses: Sequence[str] | None,
    user_id: str | None,
    job_type: str | None,
    since: datetime | None,
    since_seconds: float | None,
    limit: int,
    before: tuple[datetime, str] | None = None,
) -> list[dict[str, Any]]:
    """Jobs newest first, filtered; `before` (created_at, id) starts after that row."""
    return _all(
        conn,
        "ops_jobs_list",
        {
            "statuses": list(statuses) if statuses else None,
            "user_id": user_id,
            "job_type": job_type,
            "since": since,
            "since_seconds": since_seconds,
            "limit": limit,
            "before_at": before[0] if before else None,
            "before_id": before[1] if before else None,
        },
        lenient_times=True,
    )


def ops_job_show(conn: Connection, job_id: str, max_bytes: int) -> dict[str, Any] | None:
    """Everything about one job; metadata, result and errors as JSON text only up to max_bytes each."""
    return _one(conn, "ops_job_show", {"id": job_id, "max_bytes": max_bytes}, lenient_times=True)


def ops_job_insights(conn: Connection, job_id: str, limit: int) -> list[dict[str, Any]]:
    """The insights a job produced."""
    return _all(conn, "ops_job_insights", {"id": job_id, "limit": limit}, lenient_times=True)


def ops_job_relatives(conn: Connection, job_id: str, limit: int) -> list[dict[str, Any]]:
    """A job's parents and children (relation 'parent' or 'child'), at most limit of each, with totals."""
    return _all(conn, "ops_job_relatives", {"id": job_id, "limit": limit}, lenient_times=True)


def ops_job_state(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """A job's status and lease facts."""
    return _one(conn, "ops_job_state", {"id": job_id}, lenient_times=True)


def ops_job_cancel(conn: Connection, job_id: str, *, force: bool, by: str) -> dict[str, Any] | None:
    """Cancel a pending job or ask a running one to stop (with "ID:force" sent when forced); None if neither."""
    with conn.transaction():
        row = _one(conn, "ops_job_cancel", {"id": job_id, "force": force, "by": by}, lenient_times=True)
        if row is not None and row["status"] == "processing" and force:
            # the trigger sends the plain request; "force" must reach the daemon at once as well
            conn.execute(sql("ops_notify_cancel"), {"payload": f"{job_id}:force"})
    return row


def ops_job_retry(conn: Connection, job_id: str, by: str) -> dict[str, Any] | None:
    """A failed or cancelled job back to pending; None if it is in another state."""
    with conn.transaction():
        row = _one(conn, "ops_job_retry", {"id": job_id, "by": by}, lenient_times=True)
        if row is not None:
            notify_jobs(conn, "retried")
    return row


def _stale_params(
    stale_after_seconds: float, older_than_seconds: float | None, include_alive: bool
) -> dict[str, Any]:
    return {
        "stale_after_seconds": float(stale_after_seconds),
        "older_than_seconds": None if older_than_seconds is None else float(older_than_seconds),
        "include_alive": include_alive,
    }


def ops_stale_jobs(
    conn: Connection, *, stale_after_seconds: float, older_than_seconds: float | None, include_alive: bool
) -> list[dict[str, Any]]:
    """The running jobs an emergency reset would take."""
    return _all(
        conn,
        "ops_stale_jobs",
        _stale_params(stale_after_seconds, older_than_seconds, include_alive),
        lenient_times=True,
    )


def ops_reset_stale(
    conn: Connection,
    *,
    stale_after_seconds: float,
    older_than_seconds: float | None,
    include_alive: bool,
    retry_failed_jobs: bool,
    default_max_retries: int,
    by: str,
) -> list[dict[str, Any]]:
    """Reset running jobs under the lease rules (an attempt each); wakes daemons when some went back to pending."""
    params = {
        **_stale_params(stale_after_seconds, older_than_seconds, include_alive),
        "retry_failed_jobs": retry_failed_jobs,
        "default_max_retries": default_max_retries,
        "by": by,
        "now": None,  # the rescue's shared SET list takes a time; a reset's is the transaction's
    }
    with conn.transaction():
        rows = _all(conn, "ops_reset_stale", params, lenient_times=True)
        if any(r["status"] == "pending" for r in rows):
            notify_jobs(conn, "reset")
    return rows


def ops_purge_count(conn: Connection, statuses: Sequence[str], older_than_seconds: float) -> int:
    """How many finished jobs a purge would delete."""
    row = _one(
        conn,
        "ops_purge_count",
        {"statuses": list(statuses), "older_than_seconds": float(older_than_seconds)},
        lenient_times=True,
    )
    return int(row["n"]) if row else 0


def ops_purge_batch(conn: Connection, statuses: Sequence[str], older_than_seconds: float, batch: int) -> int:
    """Delete one batch of old finished jobs; the number deleted."""
    return delete_finished_batch(conn, statuses, older_than_seconds, batch, exclusive=False)


def ops_pause(conn: Connection, job_type: str, by: str) -> bool:
    """Pause claiming of a job type ('*' = all); False when it was already paused."""
    return _one(conn, "ops_pause", {"job_type": job_type, "by": by}, lenient_times=True) is not None


def ops_resume(conn: Connection, job_types: Sequence[str] | None) -> list[str]:
    """Lift the pauses of these job types (None: every pause); the ones that were lifted."""
    if job_types is None:
        return [r["job_type"] for r in _all(conn, "ops_resume_all", lenient_times=True)]
    return [
        r["job_type"] for r in _all(conn, "ops_resume", {"job_types": list(job_types)}, lenient_times=True)
    ]


def ops_clock(conn: Connection) -> datetime:
    """The database clock."""
    return db_now(conn)


def ops_queue_sample(conn: Connection) -> dict[str, Any]:
    """Queue depth and the oldest due pending job's wait."""
    row = _one(conn, "ops_active_counts", lenient_times=True)
    assert row is not None
    return row
