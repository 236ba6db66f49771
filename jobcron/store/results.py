"""What an application reads back about its own job (sql/results.sql): jobcron.get_job and jobcron.wait."""

from __future__ import annotations

from typing import Any

from jobcron.db import Connection
from jobcron.store import _all, _one
from jobcron.store.steps import All, One, Work

__all__ = [
    "read_result_work",
    "result_insights",
    "result_job",
]


def read_result_work(
    job_id: str, insights: bool
) -> Work[tuple[dict[str, Any], list[dict[str, Any]] | None] | None]:
    """A job as its caller sees it and, with insights, its insights; None when there is no such job."""
    row = yield One("result_job", {"id": job_id})
    if row is None:
        return None
    found = (yield All("result_insights", {"id": job_id})) if insights else None
    return row, found


def result_job(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """One job as its caller sees it: where it stands and, once finished, what it produced."""
    return _one(conn, "result_job", {"id": job_id})


def result_insights(conn: Connection, job_id: str) -> list[dict[str, Any]]:
    """The insights a job stored, in the order they were written."""
    return _all(conn, "result_insights", {"id": job_id})
