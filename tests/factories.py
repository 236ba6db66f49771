"""Insert rows in any state, so a crash or a race is set-up data rather than a killed process."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

JOB_DEFAULTS: dict[str, Any] = {"job_type": "noop"}


def insert_job(conn: psycopg.Connection[Any], **fields: Any) -> str:
    """Insert one processing_jobs row with any columns; a processing row gets a full lease."""
    values = {**JOB_DEFAULTS, **fields}
    if values.get("status") == "processing":
        now = values.get("started_at") or datetime.now().astimezone()
        values.setdefault("lease_token", str(uuid.uuid4()))
        values.setdefault("locked_by", "test-worker")
        values.setdefault("started_at", now)
        values.setdefault("locked_at", now)
        values.setdefault("heartbeat_at", now)
        values.setdefault("attempts", 1)
    for key in ("metadata", "result", "errors", "progress"):
        if key in values and values[key] is not None and not isinstance(values[key], Jsonb):
            values[key] = Jsonb(values[key])
    columns = list(values)
    query = sql.SQL("INSERT INTO processing_jobs ({}) VALUES ({}) RETURNING id").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder(c) for c in columns),
    )
    row = conn.execute(query, values).fetchone()
    assert row is not None
    return str(row["id"] if isinstance(row, dict) else row[0])


def insert_file(conn: psycopg.Connection[Any], file_path: str, **fields: Any) -> str:
    """Insert one files row."""
    values = {"file_path": file_path, **fields}
    columns = list(values)
    query = sql.SQL("INSERT INTO files ({}) VALUES ({}) RETURNING id").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder(c) for c in columns),
    )
    row = conn.execute(query, values).fetchone()
    assert row is not None
    return str(row["id"] if isinstance(row, dict) else row[0])


def status_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """How many jobs are in each status."""
    rows = conn.execute("SELECT status, count(*) AS n FROM processing_jobs GROUP BY status").fetchall()
    return {
        (r["status"] if isinstance(r, dict) else r[0]): int(r["n"] if isinstance(r, dict) else r[1])
        for r in rows
    }


def job(conn: psycopg.Connection[Any], job_id: str) -> dict[str, Any]:
    """The whole row of a job."""
    row = conn.execute("SELECT * FROM processing_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return dict(row)
