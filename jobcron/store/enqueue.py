"""Enqueueing jobs, one at a time and in bulk by COPY (sql/enqueue.sql)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import chain
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from jobcron.db import Connection
from jobcron.store import _one
from jobcron.store.steps import Copy, Exec, One, Work, run

__all__ = [
    "ENQUEUE_COLUMNS",
    "enqueue_one_work",
    "enqueue_stream_work",
    "insert_file",
    "insert_job",
    "ops_enqueue_one",
    "ops_enqueue_stream",
]


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
) -> str | None:
    """Insert one job; None when a job with the same dedup_key is still pending or running."""
    row = _one(
        conn,
        "ops_enqueue_one",
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
            "depends_on": None,
            "run_anyway": None,
        },
    )
    return str(row["id"]) if row and row["created"] else None


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


def enqueue_one_work(fields: dict[str, Any]) -> Work[tuple[str, bool] | None]:
    """Insert one job (and its files row); (id, created) — created False: a job with its dedup_key runs already."""
    params = dict(fields)
    params["metadata"] = None if params.get("metadata") is None else Jsonb(params["metadata"])
    file_path = params.pop("file_path", None)
    original_name = params.pop("original_name", None)
    size_bytes = params.pop("size_bytes", None)
    if file_path is not None:
        file_row = yield One(
            "insert_file",
            {
                "file_path": file_path,
                "original_name": original_name,
                "user_id": params.get("user_id"),
                "size_bytes": size_bytes,
            },
            lenient_times=True,
        )
        assert file_row is not None
        params["file_id"] = file_row["id"]
    row = yield One("ops_enqueue_one", params, lenient_times=True)
    return None if row is None else (str(row["id"]), bool(row["created"]))


def ops_enqueue_one(conn: psycopg.Connection[Any], fields: dict[str, Any]) -> tuple[str, bool] | None:
    """enqueue_one_work on a sync connection."""
    return run(conn, enqueue_one_work(fields))


class _UntilStaged:
    """The rows that can be copied straight into the queue: up to the first with a dedup_key or a file."""

    def __init__(self, rows: Iterator[Sequence[Any]]) -> None:
        self.rows = rows
        self.first: Sequence[Any] | None = None

    def __iter__(self) -> Iterator[Sequence[Any]]:
        for row in self.rows:
            if row[8] is not None or row[11] is not None:  # dedup_key, file_path
                self.first = row
                return
            yield (*row[:11], *row[14:])


def enqueue_stream_work(make_rows: Callable[[datetime], Iterable[Sequence[Any]]]) -> Work[tuple[int, int]]:
    """COPY rows (ENQUEUE_COLUMNS order, built by make_rows(database now)) into the queue; (inserted, given).

    Rows go straight into processing_jobs, so the server inserts while the caller still parses, until
    the first row with a dedup_key or a file to register: from there on they pass through a staging
    table whose INSERT ... ON CONFLICT skips duplicates and which registers the files rows first.
    """
    now = yield One("db_now", {"now": None})
    rows = iter(make_rows(now["now"]))
    direct_rows = _UntilStaged(rows)
    direct: int = yield Copy("ops_enqueue_direct_copy", direct_rows)
    if direct_rows.first is None:
        return direct, direct
    yield Exec("ops_enqueue_stage_drop")
    yield Exec("ops_enqueue_stage_create")
    staged_rows = chain([direct_rows.first], rows)
    staged: int = yield Copy("ops_enqueue_stage_copy", ((n, *row) for n, row in enumerate(staged_rows)))
    with_files = yield Exec("ops_enqueue_stage_files")
    inserted: int = yield Exec("ops_enqueue_from_stage")
    if with_files and inserted < staged:
        yield Exec("ops_enqueue_orphan_files")
    yield Exec("ops_enqueue_stage_drop")
    return direct + inserted, direct + staged


def ops_enqueue_stream(
    conn: psycopg.Connection[Any], make_rows: Callable[[datetime], Iterable[Sequence[Any]]]
) -> tuple[int, int]:
    """enqueue_stream_work on a sync connection."""
    return run(conn, enqueue_stream_work(make_rows))


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
    "depends_on",
    "run_anyway",
)
