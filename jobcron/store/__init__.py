"""One typed function per named query; the only module that executes runtime SQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from jobcron.db import Connection
from jobcron.models import ClaimedJob, Outcome
from jobcron.sql import sql

CLAIM_QUERIES = {"first_in_first_out": "claim_job_fifo", "priority": "claim_job_priority"}


def _one(conn: Connection, name: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
    with conn.cursor() as cur:
        cur.execute(sql(name), params or {})
        return cur.fetchone()


def _all(conn: Connection, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(sql(name), params or {})
        return cur.fetchall()


def _exec(conn: Connection, name: str, params: dict[str, Any] | None = None) -> int:
    with conn.cursor() as cur:
        cur.execute(sql(name), params or {})
        return cur.rowcount


# --- migrations ledger -----------------------------------------------------------------------------


def ledger_exists(conn: Connection) -> bool:
    """Whether the migrations ledger table exists."""
    row = _one(conn, "ledger_exists")
    return bool(row and row["present"])


def ledger_create(conn: Connection) -> None:
    """Create the ledger if missing."""
    _exec(conn, "ledger_create")


def ledger_versions(conn: Connection) -> list[dict[str, Any]]:
    """Applied migrations, oldest first."""
    return _all(conn, "ledger_versions")


def ledger_record(conn: Connection, version: int, name: str, checksum: str) -> None:
    """Record an applied migration."""
    _exec(conn, "ledger_record", {"version": version, "name": name, "checksum": checksum})


def migration_lock(conn: Connection) -> None:
    """Take the migrators' advisory lock (blocks until free)."""
    _exec(conn, "migration_lock")


def migration_unlock(conn: Connection) -> None:
    """Release the migrators' advisory lock."""
    _exec(conn, "migration_unlock")


def execute_script(conn: Connection, text: str) -> None:
    """Run a migration file (trusted SQL shipped with jobcron, no parameters)."""
    conn.execute(text.encode("utf-8"))


# --- the claim-run-record cycle ----------------------------------------------------------------------


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
    produces. The lease's own token does not: seed 003's emergency reset (`UPDATE ... SET status =
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
    }


def claim(conn: Connection, claim_params: ClaimParams) -> Claimed:
    """Claim one due job in its own short transaction, committed without waiting for the WAL flush.

    A claim lost in a server crash only leaves the job pending: the run it started then records
    nothing (no lease) and the job runs again, so execution stays at-least-once and the result is
    recorded once. Every record of a result commits synchronously, and that flush covers the claim.
    This takes a flush off the path from an insert to the start of its job.
    """
    # one pipeline, one implicit transaction: the setting is local to it, and it costs no round trip
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
    with conn.pipeline():
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


def heartbeat_job(conn: Connection, job_id: str, lease_token: str) -> str | None:
    """Refresh a running job's heartbeat: None if the lease is lost, else the cancel request: "", "cancel" or "force"."""
    row = _one(conn, "heartbeat_job", {"id": job_id, "lease_token": lease_token})
    if row is None:
        return None
    if not row["cancel_requested"]:
        return ""
    return "force" if row["cancel_force"] else "cancel"


def release_worker_jobs(conn: Connection, worker_id: str, keep_ids: Sequence[str]) -> list[str]:
    """Put back jobs locked by this worker that it does not hold (keep_ids: the ones it holds)."""
    rows = _all(conn, "release_worker_jobs", {"worker_id": worker_id, "keep_ids": list(keep_ids)})
    return [str(r["id"]) for r in rows]


def worker_id_lock(conn: Connection, worker_id: str) -> bool:
    """Hold this worker id for the session of conn; False when another live daemon holds it."""
    row = _one(conn, "worker_id_lock", {"worker_id": worker_id})
    return bool(row and row["held"])


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
    return len(_all(conn, "prune_finished_jobs", {"keep_seconds": keep_seconds, "batch": batch, "now": now}))


def pause_all_if_absent(conn: Connection, worker_id: str, alive_within_seconds: float) -> bool:
    """Pause claiming everywhere on a cold start (no other daemon seen alive); True when this call paused it."""
    row = _one(
        conn, "pause_all_if_absent", {"worker_id": worker_id, "alive_within_seconds": alive_within_seconds}
    )
    return row is not None


# --- workers and pauses ------------------------------------------------------------------------------


def worker_register(conn: Connection, worker_id: str, host: str, pid: int, state: str, version: str) -> None:
    """Announce a daemon."""
    _exec(
        conn,
        "worker_register",
        {"id": worker_id, "host": host, "pid": pid, "state": state, "version": version},
    )


def worker_heartbeat(conn: Connection, worker_id: str, state: str, current_job_id: str | None) -> int:
    """Refresh a daemon's row; 0 means the row was removed (re-register)."""
    return _exec(
        conn, "worker_heartbeat", {"id": worker_id, "state": state, "current_job_id": current_job_id}
    )


def worker_unregister(conn: Connection, worker_id: str) -> None:
    """Remove a daemon's row."""
    _exec(conn, "worker_unregister", {"id": worker_id})


def paused_types(conn: Connection) -> list[str]:
    """Paused job types ('*' = all)."""
    return [r["job_type"] for r in _all(conn, "paused_types")]


# --- enqueue and inspection --------------------------------------------------------------------------


def insert_job(
    conn: Connection,
    *,
    job_type: str,
    file_id: str | None = None,
    user_id: str | None = None,
    business_description: str | None = None,
    metadata: Any = None,
    priority: int | None = None,
    scheduled_at: datetime | None = None,
    max_retries: int | None = None,
    timeout_seconds: int | None = None,
    dedup_key: str | None = None,
    schedule_id: int | None = None,
) -> str | None:
    """Insert one job; None when a job with the same dedup_key is still pending or running."""
    row = _one(
        conn,
        "insert_job",
        {
            "job_type": job_type,
            "file_id": file_id,
            "user_id": user_id,
            "business_description": business_description,
            "metadata": None if metadata is None else Jsonb(metadata),
            "priority": priority,
            "scheduled_at": scheduled_at,
            "max_retries": max_retries,
            "timeout_seconds": timeout_seconds,
            "dedup_key": dedup_key,
            "schedule_id": schedule_id,
        },
    )
    return str(row["id"]) if row else None


def insert_file(
    conn: Connection, file_path: str, original_name: str | None, user_id: str | None, size_bytes: int | None
) -> str:
    """Register a file row."""
    row = _one(
        conn,
        "insert_file",
        {
            "file_path": file_path,
            "original_name": original_name,
            "user_id": user_id,
            "size_bytes": size_bytes,
        },
    )
    assert row is not None
    return str(row["id"])


def get_job(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """Everything about one job."""
    return _one(conn, "get_job", {"id": job_id})


def count_by_status(conn: Connection) -> dict[str, int]:
    """Job counts per status."""
    return {r["status"]: int(r["n"]) for r in _all(conn, "count_by_status")}


def user_active_jobs(conn: Connection, user_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """A user's running and pending jobs, running first."""
    return _all(conn, "user_active_jobs", {"user_id": user_id, "limit": limit})


def users_with_pending_jobs(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Users with pending jobs, with pending and running counts, busiest first."""
    return _all(conn, "users_with_pending_jobs", {"limit": limit})


def dumps(value: Any) -> str:
    """JSON text the way jobcron writes it."""
    return json.dumps(value, default=str, sort_keys=True)


# --- schedules ---------------------------------------------------------------------------------------


def schedules_due_locked(conn: Connection, now: datetime | None, limit: int) -> list[dict[str, Any]]:
    """Due schedules, row-locked for this transaction (others skip them)."""
    return _all(conn, "schedules_due_locked", {"now": now, "limit": limit})


def schedule_execution_insert(
    conn: Connection, schedule_id: int, occurrence_at: datetime, fired_by: str
) -> int | None:
    """Record an occurrence; None when it was already fired."""
    row = _one(
        conn,
        "schedule_execution_insert",
        {"schedule_id": schedule_id, "occurrence_at": occurrence_at, "fired_by": fired_by},
    )
    return None if row is None else int(row["id"])


def schedule_execution_link_job(conn: Connection, execution_id: int, job_id: str | None) -> None:
    """Link an execution to its job."""
    _exec(conn, "schedule_execution_link_job", {"id": execution_id, "job_id": job_id})


def schedule_advance(
    conn: Connection, schedule_id: int, next_run_at: datetime | None, last_run_at: datetime | None, fired: int
) -> None:
    """Move a schedule on (and disable it when there is no next run)."""
    _exec(
        conn,
        "schedule_advance",
        {"id": schedule_id, "next_run_at": next_run_at, "last_run_at": last_run_at, "fired": fired},
    )


def schedule_insert(conn: Connection, fields: dict[str, Any]) -> int:
    """Create a schedule from a full set of fields."""
    row = _one(conn, "schedule_insert", {**fields, "metadata": Jsonb(fields.get("metadata") or {})})
    assert row is not None
    return int(row["id"])


def schedule_update(conn: Connection, schedule_id: int, fields: dict[str, Any]) -> bool:
    """Replace a schedule's definition."""
    row = _one(
        conn,
        "schedule_update",
        {**fields, "id": schedule_id, "metadata": Jsonb(fields.get("metadata") or {})},
    )
    return row is not None


def schedule_get(conn: Connection, key: str) -> dict[str, Any] | None:
    """A schedule by id or name."""
    return _one(conn, "schedule_get", {"key": key})


def schedule_get_locked(conn: Connection, schedule_id: int) -> dict[str, Any] | None:
    """A schedule, row-locked until the transaction ends."""
    return _one(conn, "schedule_get_locked", {"id": schedule_id})


def schedule_db_now(conn: Connection, now: datetime | None = None) -> datetime:
    """The database clock (or `now` when given)."""
    row = _one(conn, "schedule_db_now", {"now": now})
    assert row is not None
    return row["now"]  # type: ignore[no-any-return]


def schedule_list(conn: Connection) -> list[dict[str, Any]]:
    """Every schedule with its latest job's status."""
    return _all(conn, "schedule_list")


def schedule_execution_tally(conn: Connection, schedule_id: int) -> dict[str, int]:
    """Number of a schedule's executions per job status."""
    return {r["job_status"]: r["n"] for r in _all(conn, "schedule_execution_tally", {"id": schedule_id})}


def schedule_set_enabled(
    conn: Connection, schedule_id: int, enabled: bool, next_run_at: datetime | None
) -> bool:
    """Pause or resume a schedule."""
    row = _one(
        conn, "schedule_set_enabled", {"id": schedule_id, "enabled": enabled, "next_run_at": next_run_at}
    )
    return row is not None


def schedule_delete(conn: Connection, schedule_id: int) -> bool:
    """Remove a schedule."""
    return _one(conn, "schedule_delete", {"id": schedule_id}) is not None


def schedule_executions(conn: Connection, schedule_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """A schedule's latest executions with their job status."""
    return _all(conn, "schedule_executions", {"id": schedule_id, "limit": limit})


def schedules_due(conn: Connection, now: datetime | None = None) -> list[dict[str, Any]]:
    """Enabled schedules whose next run has come."""
    return _all(conn, "schedules_due", {"now": now})


# --- demo --------------------------------------------------------------------------------------------


def demo_file_by_path(conn: Connection, file_path: str) -> str | None:
    """The id of the newest files row for this path, if any."""
    row = _one(conn, "demo_file_by_path", {"file_path": file_path})
    return str(row["id"]) if row else None


def demo_job_outcomes(conn: Connection, job_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Status, duration, result, error and file name of the given jobs."""
    return _all(conn, "demo_job_outcomes", {"ids": list(job_ids)})


def demo_insights(conn: Connection, job_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The insights the given jobs wrote."""
    return _all(conn, "demo_insights", {"ids": list(job_ids)})


# --- operator tools ----------------------------------------------------------------------------------
# Commands get a connection from the operator or from an application: rows are read as dicts whatever
# the connection's own row factory is, and nothing here commits on the caller's behalf.


_TIMESTAMPTZ_OID = psycopg.postgres.types["timestamptz"].oid


class _TimestamptzOrText(Loader):
    """A timestamptz as a datetime, or as PostgreSQL's own text when Python cannot hold it.

    Another application may write 'infinity', '-infinity' or year 10000 into any time column; the
    operator commands show such a value as it is instead of failing on the whole row set.
    """

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        loader = psycopg.adapters.get_loader(_TIMESTAMPTZ_OID, Format.TEXT)
        assert loader is not None
        self._datetime = loader(oid, context)

    def load(self, data: Buffer) -> Any:
        try:
            return self._datetime.load(data)
        except psycopg.DataError:
            return bytes(data).decode()


def _ops_cursor(conn: psycopg.Connection[Any]) -> psycopg.Cursor[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    cur.adapters.register_loader(_TIMESTAMPTZ_OID, _TimestamptzOrText)
    return cur


def _ops_rows(
    conn: psycopg.Connection[Any], name: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    with _ops_cursor(conn) as cur:
        cur.execute(sql(name), params or {})
        return cur.fetchall()


def _ops_row(
    conn: psycopg.Connection[Any], name: str, params: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    with _ops_cursor(conn) as cur:
        cur.execute(sql(name), params or {})
        return cur.fetchone()


def ops_status_rows(
    conn: Connection, queries: Sequence[tuple[str, dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """Run read-only queries in one snapshot and one round trip; rows by query name."""
    with conn.transaction():
        conn.execute(sql("ops_read_only_snapshot"))
        with conn.pipeline():
            cursors = []
            for name, params in queries:
                cur = _ops_cursor(conn)
                cur.execute(sql(name), params)
                cursors.append((name, cur))
        return {name: cur.fetchall() for name, cur in cursors}


def ops_finished_counts(conn: Connection) -> dict[str, int]:
    """Exact counts of finished jobs per status (a full scan)."""
    return {r["status"]: int(r["n"]) for r in _ops_rows(conn, "ops_finished_counts")}


def ops_workers(conn: Connection, dead_after_seconds: float) -> list[dict[str, Any]]:
    """Every daemon row with alive/dead and the job it runs."""
    return _ops_rows(conn, "ops_workers", {"dead_after_seconds": float(dead_after_seconds)})


def ops_jobs_list(
    conn: Connection,
    *,
    statuses: Sequence[str] | None,
    user_id: str | None,
    job_type: str | None,
    since: datetime | None,
    since_seconds: float | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Jobs newest first, filtered."""
    return _ops_rows(
        conn,
        "ops_jobs_list",
        {
            "statuses": list(statuses) if statuses else None,
            "user_id": user_id,
            "job_type": job_type,
            "since": since,
            "since_seconds": since_seconds,
            "limit": limit,
        },
    )


def ops_job_show(conn: Connection, job_id: str, max_bytes: int) -> dict[str, Any] | None:
    """Everything about one job; metadata, result and errors as JSON text only up to max_bytes each."""
    return _ops_row(conn, "ops_job_show", {"id": job_id, "max_bytes": max_bytes})


def ops_job_insights(conn: Connection, job_id: str, limit: int) -> list[dict[str, Any]]:
    """The insights a job produced."""
    return _ops_rows(conn, "ops_job_insights", {"id": job_id, "limit": limit})


def ops_job_state(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """A job's status and lease facts."""
    return _ops_row(conn, "ops_job_state", {"id": job_id})


def ops_job_cancel(conn: Connection, job_id: str, *, force: bool, by: str) -> dict[str, Any] | None:
    """Cancel a pending job or ask a running one to stop (with "ID:force" sent when forced); None if neither."""
    with conn.transaction():
        row = _ops_row(conn, "ops_job_cancel", {"id": job_id, "force": force, "by": by})
        if row is not None and row["status"] == "processing" and force:
            # the trigger sends the plain request; "force" must reach the daemon at once as well
            conn.execute(sql("ops_notify_cancel"), {"payload": f"{job_id}:force"})
    return row


def ops_job_retry(conn: Connection, job_id: str, by: str) -> dict[str, Any] | None:
    """A failed or cancelled job back to pending; None if it is in another state."""
    with conn.transaction():
        row = _ops_row(conn, "ops_job_retry", {"id": job_id, "by": by})
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
    return _ops_rows(
        conn, "ops_stale_jobs", _stale_params(stale_after_seconds, older_than_seconds, include_alive)
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
    }
    with conn.transaction():
        rows = _ops_rows(conn, "ops_reset_stale", params)
        if any(r["status"] == "pending" for r in rows):
            notify_jobs(conn, "reset")
    return rows


def ops_purge_count(conn: Connection, statuses: Sequence[str], older_than_seconds: float) -> int:
    """How many finished jobs a purge would delete."""
    row = _ops_row(
        conn, "ops_purge_count", {"statuses": list(statuses), "older_than_seconds": float(older_than_seconds)}
    )
    return int(row["n"]) if row else 0


def ops_purge_batch(conn: Connection, statuses: Sequence[str], older_than_seconds: float, batch: int) -> int:
    """Delete one batch of old finished jobs; the number deleted."""
    with conn.cursor() as cur:
        cur.execute(
            sql("ops_purge_batch"),
            {"statuses": list(statuses), "older_than_seconds": float(older_than_seconds), "batch": batch},
        )
        return cur.rowcount


def ops_pause(conn: Connection, job_type: str, by: str) -> bool:
    """Pause claiming of a job type ('*' = all); False when it was already paused."""
    return _ops_row(conn, "ops_pause", {"job_type": job_type, "by": by}) is not None


def ops_resume(conn: Connection, job_types: Sequence[str] | None) -> list[str]:
    """Lift the pauses of these job types (None: every pause); the ones that were lifted."""
    if job_types is None:
        return [r["job_type"] for r in _ops_rows(conn, "ops_resume_all")]
    return [r["job_type"] for r in _ops_rows(conn, "ops_resume", {"job_types": list(job_types)})]


def ops_pauses(conn: Connection) -> list[dict[str, Any]]:
    """Current pauses with when and by whom."""
    return _ops_rows(conn, "ops_pauses")


def ops_enqueue_one(conn: psycopg.Connection[Any], fields: dict[str, Any]) -> tuple[str, bool] | None:
    """Insert one job (and its files row); (id, created) — created False: a job with its dedup_key runs already."""
    params = dict(fields)
    params["metadata"] = None if params.get("metadata") is None else Jsonb(params["metadata"])
    file_path = params.pop("file_path", None)
    if file_path is not None:
        file_row = _ops_row(
            conn,
            "insert_file",
            {
                "file_path": file_path,
                "original_name": params.pop("original_name", None),
                "user_id": params.get("user_id"),
                "size_bytes": params.pop("size_bytes", None),
            },
        )
        assert file_row is not None
        params["file_id"] = file_row["id"]
    params.pop("original_name", None)
    params.pop("size_bytes", None)
    row = _ops_row(conn, "ops_enqueue_one", params)
    return None if row is None else (str(row["id"]), bool(row["created"]))


def ops_enqueue_stream(
    conn: psycopg.Connection[Any], make_rows: Callable[[datetime], Iterable[Sequence[Any]]]
) -> tuple[int, int]:
    """COPY rows (ENQUEUE_COLUMNS order, built by make_rows(database now)) into the queue; (inserted, given).

    Rows go straight into processing_jobs, so the server inserts while the caller still parses, until
    the first row with a dedup_key or a file to register: from there on they pass through a staging
    table whose INSERT ... ON CONFLICT skips duplicates and which registers the files rows first.
    """
    rows = iter(make_rows(ops_clock(conn)))
    direct = 0
    first_staged: Sequence[Any] | None = None
    with conn.cursor() as cur:
        with cur.copy(sql("ops_enqueue_direct_copy")) as copy:
            for row in rows:
                if row[8] is not None or row[11] is not None:  # dedup_key, file_path
                    first_staged = row
                    break
                copy.write_row(row[:11])
                direct += 1
        if first_staged is None:
            return direct, direct
        cur.execute(sql("ops_enqueue_stage_drop"))
        cur.execute(sql("ops_enqueue_stage_create"))
        staged = 1
        with cur.copy(sql("ops_enqueue_stage_copy")) as copy:
            copy.write_row((0, *first_staged))
            for row in rows:
                copy.write_row((staged, *row))
                staged += 1
        cur.execute(sql("ops_enqueue_stage_files"))
        with_files = cur.rowcount
        cur.execute(sql("ops_enqueue_from_stage"))
        inserted = cur.rowcount
        if with_files and inserted < staged:
            cur.execute(sql("ops_enqueue_orphan_files"))
        cur.execute(sql("ops_enqueue_stage_drop"))
    return direct + inserted, direct + staged


# The column order of ops_enqueue_stream rows.
ENQUEUE_COLUMNS = (
    "id",
    "job_type",
    "user_id",
    "metadata",
    "priority",
    "scheduled_at",
    "max_retries",
    "timeout_seconds",
    "dedup_key",
    "file_id",
    "business_description",
    "file_path",
    "original_name",
    "size_bytes",
)


def ops_clock(conn: Connection) -> datetime:
    """The database clock."""
    row = _ops_row(conn, "ops_clock")
    assert row is not None
    return row["now"]  # type: ignore[no-any-return]


def ops_queue_sample(conn: Connection) -> dict[str, Any]:
    """Queue depth and the oldest due pending job's wait."""
    row = _ops_row(conn, "ops_queue_sample")
    assert row is not None
    return row
