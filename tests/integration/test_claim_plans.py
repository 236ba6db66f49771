"""The daemon's generic plans stay index probes whatever the statistics said when they were made.

A daemon prepares its statements once, usually while the queue is empty and then never analysed
again (a queue swings between empty and full within minutes). Each test makes the plan in one such
state, then inserts a burst of jobs of distinct users and runs the plan it made: every read of
processing_jobs must be an index probe with a condition, and the claim must look at a few rows only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from jobcron.db import WORKER_PLANNER_OPTIONS
from jobcron.sql import sql

Conn = psycopg.Connection[dict[str, Any]]
BURST = (
    "INSERT INTO processing_jobs (job_type, user_id) SELECT 'noop', 'u' || g FROM generate_series(1, 10000) g"
)
RUNNING = (
    "INSERT INTO processing_jobs (job_type, user_id, status, attempts, started_at, heartbeat_at, locked_by,"
    " lease_token, user_slot) SELECT 'noop', 'busy' || g, 'processing', 1, now(), now(), 'w', gen_random_uuid(), 1"
    " FROM generate_series(1, 1000) g"
)
STATES = {
    "empty, never analysed": [],
    "empty, analysed": ["ANALYZE processing_jobs"],
    "full, analysed": [BURST, "ANALYZE processing_jobs"],
    "1,000 running jobs, never analysed": [RUNNING],
    "1,000 running jobs, analysed": [RUNNING, "ANALYZE processing_jobs"],
    "finished rows only, analysed": [
        "INSERT INTO processing_jobs (job_type, status, attempts, started_at, completed_at, locked_by) "
        "SELECT 'noop', 'completed', 1, now(), now(), 'w' FROM generate_series(1, 50000)",
        "ANALYZE processing_jobs",
    ],
}
ARGS = {"worker_id": "'w'", "user_limit": "1", "max_metadata_bytes": "65536"}


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _plan(raw: Any) -> dict[str, Any]:
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]  # type: ignore[no-any-return]


def _prepared(conn: Conn, name: str, values: dict[str, str]) -> str:
    """PREPARE the named query with positional parameters; the EXECUTE argument list for it."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", number, sql(name))
    conn.execute(f"PREPARE q AS {text}".encode())
    return ", ".join(values[p] for p in order)


@pytest.fixture
def worker_conn(dsn: str) -> Iterator[Conn]:
    """A connection with the daemon's own planner settings."""
    options = " ".join(WORKER_PLANNER_OPTIONS)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row, options=options) as conn:
        yield conn


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("query", ["claim_job_fifo", "claim_job_priority"])
def test_the_claim_plan_made_in_any_state_stays_a_few_probes(
    conn: Conn, worker_conn: Conn, state: str, query: str
) -> None:
    for statement in STATES[state]:
        conn.execute(statement)
    args = _prepared(worker_conn, query, ARGS)
    worker_conn.execute("BEGIN")
    worker_conn.execute(f"EXECUTE q({args})")  # the generic plan is made now, in this state
    worker_conn.execute("ROLLBACK")
    conn.execute(BURST)  # the burst comes; no ANALYZE
    worker_conn.execute("BEGIN")
    row = worker_conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE q({args})").fetchone()
    worker_conn.execute("ROLLBACK")
    assert row is not None
    plan = _plan(row["QUERY PLAN"])
    nodes = list(_nodes(plan))
    scans = [
        n for n in nodes if n.get("Relation Name") == "processing_jobs" and n["Node Type"] != "ModifyTable"
    ]
    for scan in scans:
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan["Node Type"]
        assert "Index Cond" in scan, f"{scan['Index Name']} read without a condition: {scan.get('Filter')}"
    assert not [n for n in nodes if n["Node Type"] in ("Hash Join", "Merge Join", "Hash", "Seq Scan")]
    window = [s for s in scans if s.get("Alias") == "h"]
    order = "fifo" if query.endswith("fifo") else "priority"
    assert [w["Index Name"] for w in window] == [f"processing_jobs_claim_{order}_idx"] * len(window)
    # the first job may run: one row of the window judged, no sort of the window before the lock
    picked = next(n for n in nodes if n.get("Subplan Name") == "CTE picked")
    assert not [n for n in _nodes(picked) if n["Node Type"] == "Sort"]
    read = sum(s["Actual Rows"] * s["Actual Loops"] for s in scans)
    assert read <= 10, f"the claim read {read} rows"
    assert [n for n in nodes if n["Node Type"] == "ModifyTable" and n["Actual Rows"] == 1]


@pytest.mark.parametrize(
    "query", ["finish_job", "next_due_in", "unpark_runnable_fifo", "unpark_runnable_priority"]
)
def test_the_other_worker_statements_are_probes_too(conn: Conn, worker_conn: Conn, query: str) -> None:
    values = {
        **ARGS,
        "id": "gen_random_uuid()",
        "lease_token": "gen_random_uuid()",
        "recorded_lease": "gen_random_uuid()",
        "status": "'completed'",
        "delay_seconds": "0",
        "retry_increment": "0",
        "uncharge": "0",
        "result": "NULL",
        "error_message": "NULL",
        "error": "NULL",
        "insights": "NULL",
        "followups": "NULL",
        "batch": "100",
    }
    args = _prepared(worker_conn, query, values)
    conn.execute(BURST)
    row = worker_conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE q{f'({args})' if args else ''}").fetchone()
    assert row is not None
    reads = (n for n in _nodes(_plan(row["QUERY PLAN"])) if n.get("Relation Name") == "processing_jobs")
    for scan in (n for n in reads if n["Node Type"] != "ModifyTable"):
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), (query, scan["Node Type"])
