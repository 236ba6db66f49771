"""The daemon's job cycle: claim, record, heartbeat, release, rescue, wake-ups, retention (sql/jobs.sql)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from jobcron.db import Connection
from jobcron.models import ClaimedJob, Outcome
from jobcron.sql import sql
from jobcron.store import _all, _exec, _one
from jobcron.store.translate import translate

__all__ = [
    "CLAIM_QUERIES",
    "FINISHED_STATUSES",
    "RECORDED_LEASE_NAMESPACE",
    "ClaimParams",
    "Claimed",
    "claim",
    "db_now",
    "delete_finished_batch",
    "finish",
    "finish_and_claim",
    "get_file",
    "heartbeat_job",
    "job_lease_state",
    "mark_file_processing",
    "next_due_in",
    "notify_jobs",
    "prune_finished_jobs",
    "recorded_lease",
    "release_worker_jobs",
    "rescue_stale_jobs",
    "unpark_runnable",
]

CLAIM_QUERIES = {"first_in_first_out": "claim_job_fifo", "priority": "claim_job_priority"}


@dataclass(frozen=True)
class ClaimParams:
    """What a claim needs to know of the daemon making it."""

    worker_id: str
    order: str = "first_in_first_out"
    user_limit: int | None = None
    max_metadata_bytes: int = 65536

    def params(self) -> dict[str, Any]:
        """The claim query's parameters."""
        return {
            "worker_id": self.worker_id,
            "user_limit": self.user_limit,
            "max_metadata_bytes": self.max_metadata_bytes,
        }


@dataclass(frozen=True)
class Claimed:
    """A claim's answer: the job (None when nothing may run now) and how many blocked jobs it parked."""

    job: ClaimedJob | None
    parked: int = 0


def _claimed(row: dict[str, Any] | None) -> Claimed:
    if row is None:  # pragma: no cover - the claim always answers one row
        return Claimed(None)
    return Claimed(ClaimedJob.from_row(row) if row["id"] is not None else None, int(row["parked"]))


# Namespace of the tokens a record leaves behind (recorded_lease).
RECORDED_LEASE_NAMESPACE = uuid.UUID("8f1d3c52-6a0e-4c8e-9a51-2f7b6f4f0c1d")


def recorded_lease(lease_token: str) -> str:
    """The lease_token a record under this lease leaves on the row.

    After its record a row must say "recorded by the holder of lease X" in a way no other writer
    produces. The lease's own token does not: the emergency reset applications run by hand (`UPDATE ... SET status =
    'pending' ... WHERE status = 'processing'`) leaves it on the now-pending row, and a run whose
    record then found nothing took that for its own write whose answer was lost, and logged a
    completion nothing had stored. A value derived from the token is written by the record alone.
    """
    return str(uuid.uuid5(RECORDED_LEASE_NAMESPACE, lease_token))


def _finish_params(job: ClaimedJob, outcome: Outcome) -> dict[str, Any]:
    return {
        "id": job.id,
        "lease_token": job.lease_token,
        "recorded_lease": recorded_lease(job.lease_token),
        "status": outcome.status.value,
        "delay_seconds": float(outcome.delay_seconds),
        "retry_increment": outcome.retry_increment,
        "uncharge": 1 if outcome.uncharge else 0,
        "result": None if outcome.result is None else Jsonb(outcome.result),
        "error_message": outcome.error_message,
        "error": None if outcome.error is None else Jsonb(outcome.error),
        "insights": Jsonb(outcome.insights) if outcome.insights else None,
        "followups": Jsonb(outcome.followups) if outcome.followups else None,
    }


def claim(conn: Connection, claim_params: ClaimParams) -> Claimed:
    """Claim one due job in its own short transaction, committed without waiting for the WAL flush.

    A claim lost in a server crash only leaves the job pending: the run it started then records
    nothing (no lease) and the job runs again, so execution stays at-least-once and the result is
    recorded once. Every record of a result commits synchronously, and that flush covers the claim.
    This takes a flush off the path from an insert to the start of its job.
    """
    # one pipeline, one implicit transaction: the setting is local to it, and it costs no round trip
    with translate():
        with conn.pipeline():
            conn.execute(sql("claim_commit_async"))
            cur = conn.cursor()
            cur.execute(sql(CLAIM_QUERIES[claim_params.order]), claim_params.params())
        return _claimed(cur.fetchone())


def finish(conn: Connection, job: ClaimedJob, outcome: Outcome) -> bool:
    """Record an attempt's outcome; False when the lease was lost (nothing written)."""
    row = _one(conn, "finish_job", _finish_params(job, outcome))
    return bool(row and row["recorded"])


def finish_and_claim(
    conn: Connection, job: ClaimedJob, outcome: Outcome, claim_params: ClaimParams
) -> tuple[bool, Claimed]:
    """Record job N and claim job N+1 in one transaction and one round trip (pipelined)."""
    # autocommit + one pipeline = one implicit transaction ending at the single Sync: one round trip, one commit
    with translate():
        with conn.pipeline():
            conn.execute(sql("claims_next_mark"))
            done = conn.cursor()
            done.execute(sql("finish_job"), _finish_params(job, outcome))
            nxt = conn.cursor()
            nxt.execute(sql(CLAIM_QUERIES[claim_params.order]), claim_params.params())
        recorded_row = done.fetchone()
        recorded = bool(recorded_row and recorded_row["recorded"])
        return recorded, _claimed(nxt.fetchone())


def unpark_runnable(conn: Connection, order: str, user_limit: int | None, batch: int) -> int:
    """Put parked jobs that may run now back into the claim's indexes (at most batch); how many."""
    name = "unpark_runnable_" + CLAIM_QUERIES[order].rsplit("_", 1)[1]
    return len(_all(conn, name, {"user_limit": user_limit, "batch": batch}))


def job_lease_state(conn: Connection, job_id: str, lease_token: str) -> dict[str, Any] | None:
    """A job's status and whether a record under this lease is the last thing written to it ("ours")."""
    return _one(conn, "job_lease_state", {"id": job_id, "recorded_lease": recorded_lease(lease_token)})


def mark_file_processing(conn: Connection, file_id: str) -> None:
    """Mark a file row as being processed."""
    _exec(conn, "mark_file_processing", {"file_id": file_id})


def get_file(conn: Connection, file_id: str) -> dict[str, Any] | None:
    """A file row."""
    return _one(conn, "get_file", {"id": file_id})


def heartbeat_job(
    conn: Connection, job_id: str, lease_token: str, progress: tuple[float, str | None] | None = None
) -> str | None:
    """Refresh a running job's heartbeat, and its progress when given (fraction, message).

    None if the lease is lost, else the cancel request: "", "cancel" or "force".
    """
    fraction, message = progress if progress is not None else (None, None)
    params = {"id": job_id, "lease_token": lease_token, "fraction": fraction, "message": message}
    row = _one(conn, "heartbeat_job", params)
    if row is None:
        return None
    if not row["cancel_requested"]:
        return ""
    return "force" if row["cancel_force"] else "cancel"


def release_worker_jobs(conn: Connection, worker_id: str, keep_ids: Sequence[str]) -> list[str]:
    """Put back jobs locked by this worker that it does not hold (keep_ids: the ones it holds)."""
    rows = _all(conn, "release_worker_jobs", {"worker_id": worker_id, "keep_ids": list(keep_ids)})
    return [str(r["id"]) for r in rows]


def rescue_stale_jobs(
    conn: Connection,
    *,
    worker_id: str,
    stale_after_seconds: float,
    max_processing_seconds: float,
    retry_failed_jobs: bool,
    default_max_retries: int,
    now: datetime | None = None,
    restarted_worker: str | None = None,
    held_ids: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Rescue jobs of lost workers and jobs over the processing ceiling; returns what was done.

    restarted_worker: also rescue, whatever their heartbeat, the jobs an earlier run of this
    worker id left processing (the daemon starting now is that id's only live holder).
    held_ids: jobs worker_id holds now; never rescued for an old heartbeat (only the ceiling fails them).
    """
    return _all(
        conn,
        "rescue_stale_jobs",
        {
            "restarted_worker": restarted_worker,
            "held_ids": list(held_ids),
            "worker_id": worker_id,
            "stale_after_seconds": float(stale_after_seconds),
            "max_processing_seconds": float(max_processing_seconds),
            "retry_failed_jobs": retry_failed_jobs,
            "default_max_retries": default_max_retries,
            "now": now,
        },
    )


def next_due_in(conn: Connection) -> float | None:
    """Seconds until a future-scheduled pending job becomes due."""
    row = _one(conn, "next_due_in")
    return None if row is None or row["seconds"] is None else float(row["seconds"])


def notify_jobs(conn: Connection, reason: str) -> None:
    """Wake listening daemons."""
    _exec(conn, "notify_jobs", {"reason": reason})


def prune_finished_jobs(
    conn: Connection, keep_seconds: float, batch: int, now: datetime | None = None
) -> int:
    """Delete one batch of finished jobs older than keep_seconds; 0 when nothing (or another daemon prunes)."""
    return delete_finished_batch(conn, FINISHED_STATUSES, keep_seconds, batch, exclusive=True, now=now)


FINISHED_STATUSES = ("completed", "failed", "cancelled")


def delete_finished_batch(
    conn: Connection,
    statuses: Sequence[str],
    older_than_seconds: float,
    batch: int,
    *,
    exclusive: bool,
    now: datetime | None = None,
) -> int:
    """Delete one batch of finished jobs of these statuses older than the cutoff; the number deleted.

    exclusive: under the retention's advisory lock (0 when another daemon holds it).
    """
    params = {
        "statuses": list(statuses),
        "older_than_seconds": float(older_than_seconds),
        "batch": batch,
        "exclusive": exclusive,
        "now": now,
    }
    return _exec(conn, "prune_finished_jobs", params)


def db_now(conn: Connection, now: datetime | None = None) -> datetime:
    """The database clock (or `now` when given)."""
    row = _one(conn, "db_now", {"now": now})
    assert row is not None
    return row["now"]  # type: ignore[no-any-return]
