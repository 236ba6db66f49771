"""Every one-shot command on a database that was never migrated answers as `run` does: exit 3, run migrate."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.factories import insert_job
from tests.ops_cli import run

SOME_ID = "01a205dc-19ad-7d2d-ae9b-ee07f2fd135d"
COMMANDS = [
    ["status"],
    ["status", "--json"],
    ["workers"],
    ["pause"],
    ["resume"],
    ["enqueue", "--type", "noop"],
    ["jobs", "list"],
    ["jobs", "show", SOME_ID],
    ["jobs", "cancel", SOME_ID],
    ["jobs", "retry", SOME_ID],
    ["jobs", "reset-stale"],
    ["jobs", "purge", "--older-than", "30d"],
    ["schedules", "list"],
    ["schedules", "show", "nightly"],
    ["schedules", "due"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_a_never_migrated_database_exits_3_and_says_to_migrate(empty_dsn: str, args: list[str]) -> None:
    result = run(empty_dsn, *args)
    assert result.exit_code == 3, result.output
    assert "run `job_cron migrate`" in result.output
    assert "does not exist" not in result.output


def test_a_missing_column_on_a_current_schema_stays_a_database_error(
    conn: psycopg.Connection[dict[str, Any]], dsn: str
) -> None:
    """Exit 3 only when the ledger says the schema is behind: a table someone damaged is not that."""
    insert_job(conn, job_type="noop")
    conn.execute("ALTER TABLE processing_jobs DROP COLUMN dedup_key")
    result = run(dsn, "enqueue", "--type", "noop", "--dedup-key", "k1")
    assert result.exit_code == 1, result.output
    assert "dedup_key" in result.output and "job_cron migrate" not in result.output
