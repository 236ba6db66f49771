"""Daemon rows, the worker-id lock and the pauses daemons read (sql/workers.sql)."""

from __future__ import annotations

from typing import Any

from jobcron.db import Connection
from jobcron.store import _all, _exec, _one

__all__ = [
    "ops_pauses",
    "pause_all_if_absent",
    "paused_types",
    "worker_heartbeat",
    "worker_id_lock",
    "worker_register",
    "worker_unregister",
]


def worker_id_lock(conn: Connection, worker_id: str) -> bool:
    """Hold this worker id for the session of conn; False when another live daemon holds it."""
    row = _one(conn, "worker_id_lock", {"worker_id": worker_id})
    return bool(row and row["held"])


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
    return [r["job_type"] for r in ops_pauses(conn)]


def ops_pauses(conn: Connection) -> list[dict[str, Any]]:
    """Current pauses with when and by whom."""
    return _all(conn, "ops_pauses", lenient_times=True)


def pause_all_if_absent(conn: Connection, worker_id: str, alive_within_seconds: float) -> bool:
    """Pause claiming everywhere on a cold start (no other daemon seen alive); True when this call paused it."""
    row = _one(
        conn, "pause_all_if_absent", {"worker_id": worker_id, "alive_within_seconds": alive_within_seconds}
    )
    return row is not None
