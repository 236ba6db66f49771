"""What an application reads back about its own job (sql/results.sql): jobcron.get_job and jobcron.wait."""

from __future__ import annotations

from typing import Any

from jobcron.db import Connection
from jobcron.store import _all, _one

__all__ = [
    "result_insights",
    "result_job",
]


def result_job(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """One job as its caller sees it: where it stands and, once finished, what it produced."""
    return _one(conn, "result_job", {"id": job_id})


def result_insights(conn: Connection, job_id: str) -> list[dict[str, Any]]:
    """The insights a job stored, in the order they were written."""
    return _all(conn, "result_insights", {"id": job_id})
