"""The demo's read-backs (sql/demo.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobcron.db import Connection
from jobcron.store import _all, _one

__all__ = [
    "demo_file_by_path",
    "demo_insights",
    "demo_job_outcomes",
]


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
