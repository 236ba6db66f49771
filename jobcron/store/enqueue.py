"""Enqueueing jobs, one at a time and in bulk by COPY (sql/enqueue.sql)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from jobcron.db import Connection
from jobcron.sql import sql
from jobcron.store import _one
from jobcron.store.jobs import db_now
from jobcron.store.translate import translate

__all__ = [
    "ENQUEUE_COLUMNS",
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


def ops_enqueue_one(conn: psycopg.Connection[Any], fields: dict[str, Any]) -> tuple[str, bool] | None:
    """Insert one job (and its files row); (id, created) — created False: a job with its dedup_key runs already."""
    params = dict(fields)
    params["metadata"] = None if params.get("metadata") is None else Jsonb(params["metadata"])
    file_path = params.pop("file_path", None)
    if file_path is not None:
        file_row = _one(
            conn,
            "insert_file",
            {
                "file_path": file_path,
                "original_name": params.pop("original_name", None),
                "user_id": params.get("user_id"),
                "size_bytes": params.pop("size_bytes", None),
            },
            lenient_times=True,
        )
        assert file_row is not None
        params["file_id"] = file_row["id"]
    params.pop("original_name", None)
    params.pop("size_bytes", None)
    row = _one(conn, "ops_enqueue_one", params, lenient_times=True)
    return None if row is None else (str(row["id"]), bool(row["created"]))


def ops_enqueue_stream(
    conn: psycopg.Connection[Any], make_rows: Callable[[datetime], Iterable[Sequence[Any]]]
) -> tuple[int, int]:
    """COPY rows (ENQUEUE_COLUMNS order, built by make_rows(database now)) into the queue; (inserted, given).

    Rows go straight into processing_jobs, so the server inserts while the caller still parses, until
    the first row with a dedup_key or a file to register: from there on they pass through a staging
    table whose INSERT ... ON CONFLICT skips duplicates and which registers the files rows first.
    """
    rows = iter(make_rows(db_now(conn)))
    direct = 0
    first_staged: Sequence[Any] | None = None
    with translate():
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
