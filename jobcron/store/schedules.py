"""Schedules: firing and management (sql/schedules.sql)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from jobcron.db import Connection
from jobcron.store import _all, _exec, _one
from jobcron.store.jobs import db_now

__all__ = [
    "schedule_advance",
    "schedule_db_now",
    "schedule_delete",
    "schedule_execution_insert",
    "schedule_execution_link_job",
    "schedule_execution_tally",
    "schedule_executions",
    "schedule_get",
    "schedule_get_locked",
    "schedule_insert",
    "schedule_list",
    "schedule_set_enabled",
    "schedule_update",
    "schedules_due",
    "schedules_due_locked",
    "schedules_unplanned_locked",
]


def schedules_due_locked(conn: Connection, now: datetime | None, limit: int) -> list[dict[str, Any]]:
    """Due schedules, row-locked for this transaction (others skip them)."""
    return _all(conn, "schedules_due_locked", {"now": now, "limit": limit})


def schedules_unplanned_locked(conn: Connection, now: datetime | None, limit: int) -> list[dict[str, Any]]:
    """Enabled schedules without a next run (inserted with plain SQL), row-locked for this transaction."""
    return _all(conn, "schedules_unplanned_locked", {"now": now, "limit": limit})


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


# The database clock under the name jobcron.schedules calls it by (one clock query: jobs.db_now).
schedule_db_now = db_now


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
