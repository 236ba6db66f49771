"""Operator tools on a big table: `status` and `jobs list` latency, bulk enqueue rate (CLI path and API).

    .venv/bin/python -m bench.ops            # JOBCRON_BENCH_DSN: an admin DSN (default local postgres)

Builds a throwaway database with 1,000,000 finished and 10,000 pending jobs, times the plain functions
behind the commands in-process (median of several runs), then enqueues 100,000 jobs through the CLI's
bulk path and through `jobcron.enqueue_many`, and prints one JSON object with pass/fail per target.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from jobcron import bulk, migrate
from jobcron.admin import jobs as admin_jobs
from jobcron.admin import status as admin_status
from jobcron.client import enqueue_many
from jobcron.config import load_config

ADMIN_DSN = os.environ.get("JOBCRON_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
FINISHED = 1_000_000
PENDING = 10_000
BULK_ROWS = 100_000
RUNS = 7
LATENCY_TARGET_MS = 200.0
RATE_TARGET = 50_000

FILL_FINISHED = """
INSERT INTO processing_jobs (job_type, status, user_id, metadata, created_at, scheduled_at, started_at,
                             completed_at, updated_at, attempts, retry_count, result, error_message, errors)
SELECT (ARRAY['analysis', 'noop', 'report', 'email', 'sync'])[1 + i %% 5],
       CASE WHEN i %% 100 < 94 THEN 'completed' WHEN i %% 100 < 99 THEN 'failed' ELSE 'cancelled' END,
       'user' || (i %% 1000), jsonb_build_object('n', i),
       ts - interval '5 seconds', ts - interval '5 seconds', ts - interval '2 seconds', ts, ts, 1,
       CASE WHEN i %% 100 BETWEEN 94 AND 98 THEN 3 ELSE 0 END,
       CASE WHEN i %% 100 < 94 THEN jsonb_build_object('ok', true) END,
       CASE WHEN i %% 100 >= 94 THEN 'ValueError: boom' END,
       CASE WHEN i %% 100 >= 94
            THEN jsonb_build_array(jsonb_build_object('attempt', 1, 'type', 'ValueError', 'message', 'boom'))
            ELSE '[]'::jsonb END
FROM (SELECT i, now() - i * interval '2.592 seconds' AS ts
      FROM generate_series(%(lo)s::int, %(hi)s::int) AS i) s
"""
FILL_PENDING = """
INSERT INTO processing_jobs (job_type, user_id, metadata, created_at, scheduled_at)
SELECT (ARRAY['analysis', 'noop', 'report', 'email', 'sync'])[1 + i %% 5], 'user' || (i %% 200),
       jsonb_build_object('n', i), now() - i * interval '0.1 seconds',
       now() - i * interval '0.1 seconds' + CASE WHEN i %% 100 = 0 THEN interval '2 hours' ELSE interval '0' END
FROM generate_series(1, %(n)s::int) AS i
"""
FILL_RUNNING = """
INSERT INTO processing_jobs (job_type, status, user_id, started_at, heartbeat_at, locked_by, locked_at,
                             lease_token, attempts)
SELECT 'analysis', 'processing', 'busy' || i, now() - i * interval '1 minute', now(), 'bench-w' || (i % 3),
       now(), gen_random_uuid(), 1
FROM generate_series(1, 20) AS i
"""
FILL_WORKERS = """
INSERT INTO job_workers (id, host, pid, state, last_seen_at)
SELECT 'bench-w' || i, 'host' || i, 1000 + i, 'running',
       CASE WHEN i < 3 THEN now() ELSE now() - interval '1 hour' END
FROM generate_series(0, 4) AS i
"""
# the server's own ceiling for comparison: the same kind of rows inserted by the database alone
SERVER_INSERT = """
INSERT INTO processing_jobs (job_type, user_id, metadata, priority)
SELECT 'bulk', 'u' || (i %% 500), jsonb_build_object('n', i, 'path', '/data/f' || i || '.csv'), i %% 10
FROM generate_series(1, %(n)s::int) AS i
"""


def median_ms(fn: Callable[[], Any], runs: int = RUNS) -> dict[str, float]:
    """Median and max of `runs` timed calls after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}


def build(conn: psycopg.Connection[dict[str, Any]], finished: int = FINISHED) -> float:
    """Fill the table; returns seconds taken."""
    t0 = time.perf_counter()
    step = 250_000
    for lo in range(1, finished + 1, step):
        conn.execute(FILL_FINISHED, {"lo": lo, "hi": min(lo + step - 1, finished)})
        print(f"bench.ops: {min(lo + step - 1, finished):,} finished jobs", file=sys.stderr)
    conn.execute(FILL_PENDING, {"n": PENDING})
    conn.execute(FILL_RUNNING)
    conn.execute(FILL_WORKERS)
    # one user whose only job is the oldest of all: the worst case of `jobs list --user`
    conn.execute(
        "INSERT INTO processing_jobs (job_type, status, user_id, created_at, completed_at) "
        "VALUES ('report', 'completed', 'rare-user', now() - interval '40 days', now() - interval '40 days')"
    )
    conn.execute(
        "INSERT INTO job_schedules (name, job_type, kind, interval_seconds, next_run_at) "
        "VALUES ('bench-due', 'report', 'interval', 60, now() - interval '1 minute')"
    )
    # what autovacuum would have done on a table that grew to this size
    conn.execute("VACUUM ANALYZE processing_jobs")
    return time.perf_counter() - t0


def latencies(conn: psycopg.Connection[dict[str, Any]], config: Any) -> dict[str, Any]:
    """status and jobs list variants, in-process."""
    out: dict[str, Any] = {"status": median_ms(lambda: admin_status.collect_status(conn, config))}
    variants: dict[str, dict[str, Any]] = {
        "default": {},
        "status_pending": {"statuses": ["pending"]},
        "status_failed": {"statuses": ["failed"]},
        "status_processing": {"statuses": ["processing"]},
        "user": {"user_id": "user7"},
        "user_rare_worst_case": {"user_id": "rare-user"},
        "type": {"job_type": "report"},
        "since_1h": {"since_seconds": 3600.0},
        "status_failed_type_report": {"statuses": ["failed"], "job_type": "report"},
        "limit_1000": {"limit": 1000},
    }
    for name, kwargs in variants.items():
        out[f"jobs_list_{name}"] = median_ms(lambda kw=kwargs: admin_jobs.list_jobs(conn, **kw))
    out["health"] = median_ms(
        lambda: admin_status.collect_health(conn, config, admin_status.HealthThresholds()), runs=3
    )
    return out


def bulk_rates(conn: psycopg.Connection[dict[str, Any]], folder: Path, count: int = 0) -> dict[str, Any]:
    """Bulk enqueue of `count` rows (default BULK_ROWS) through the CLI's code path and through the Python API."""
    n = count or BULK_ROWS
    lines = [
        json.dumps(
            {"job_type": "bulk", "user_id": f"u{i % 500}", "metadata": {"n": i, "path": f"/data/f{i}.csv"}}
        )
        for i in range(n)
    ]
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows = [
        {"job_type": "bulk", "user_id": f"u{i % 500}", "metadata": {"n": i, "path": f"/data/f{i}.csv"}}
        for i in range(n)
    ]
    out: dict[str, Any] = {"rows": n}
    cli_runs, api_runs, server_runs = [], [], []
    for _ in range(2):
        with path.open(encoding="utf-8") as source:
            t0 = time.perf_counter()
            result = bulk.enqueue_bulk(conn, source, "jsonl")
            cli_runs.append(n / (time.perf_counter() - t0))
        assert result.inserted == n
        t0 = time.perf_counter()
        assert enqueue_many(conn, rows) == n
        api_runs.append(n / (time.perf_counter() - t0))
        with conn.transaction():
            t0 = time.perf_counter()
            conn.execute(SERVER_INSERT, {"n": n})
            server_runs.append(n / (time.perf_counter() - t0))
            raise psycopg.Rollback()
        # keep the table the same size for the next run
        conn.execute("DELETE FROM processing_jobs WHERE job_type = 'bulk'")
        conn.execute("VACUUM processing_jobs")
    out["cli_bulk_jsonl_rows_per_s"] = [round(r) for r in cli_runs]
    out["api_enqueue_many_rows_per_s"] = [round(r) for r in api_runs]
    out["server_insert_select_rows_per_s"] = [round(r) for r in server_runs]
    return out


def main() -> int:
    """Build, measure, print JSON; the database is dropped whatever happens."""
    name = f"jobcron_bench_ops_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    report: dict[str, Any] = {
        "table": {"finished": FINISHED, "pending": PENDING},
        "runs": RUNS,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(ADMIN_DSN, dbname=name)
    try:
        config = load_config(None, {"DATABASE_URL": dsn})
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            migrate.migrate(conn)
            report["build_seconds"] = round(build(conn), 1)
            report["latency"] = latencies(conn, config)
            with tempfile.TemporaryDirectory() as folder:
                report["bulk_enqueue"] = bulk_rates(conn, Path(folder))
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    lat = report["latency"]
    timed = {k: v["median_ms"] for k, v in lat.items() if k == "status" or k.startswith("jobs_list")}
    worst = {k: v for k, v in timed.items() if k.endswith("worst_case")}
    typical = {k: v for k, v in timed.items() if k not in worst}
    bulk_report = report["bulk_enqueue"]
    report["pass"] = {
        f"status_and_jobs_list_median_under_{LATENCY_TARGET_MS:g}ms": max(typical.values())
        < LATENCY_TARGET_MS,
        # a filter matching only a few old rows (a rare user) must scan: no index covers it
        f"jobs_list_worst_case_under_{LATENCY_TARGET_MS:g}ms": max(worst.values()) < LATENCY_TARGET_MS,
        f"cli_bulk_at_least_{RATE_TARGET}_per_s": max(bulk_report["cli_bulk_jsonl_rows_per_s"])
        >= RATE_TARGET,
        f"api_at_least_{RATE_TARGET}_per_s": max(bulk_report["api_enqueue_many_rows_per_s"]) >= RATE_TARGET,
        # for reading the two above: the same rows inserted by the server alone, on this machine now
        "server_insert_ceiling_rows_per_s": max(bulk_report["server_insert_select_rows_per_s"]),
    }
    buf = io.StringIO()
    json.dump(report, buf, indent=2)
    print(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
