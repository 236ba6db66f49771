"""Cost of firing due schedules: milliseconds per occurrence, one daemon and four racing.

    .venv/bin/python -m bench.schedules_fire [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [-n 1000]

Creates a throwaway database, adds N due schedules of one kind (cron in Europe/Berlin, daily in UTC),
fires them with fire_due() (one connection; then 4 threads with their own connections), checks that
exactly N jobs were enqueued each time, prints one JSON line per measurement and drops the database.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from datetime import time as clock
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from jobcron import migrate, store
from jobcron.schedules.firing import FIRED, fire_due, first_run
from jobcron.schedules.rules import ScheduleSpec

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DUE = datetime(2026, 3, 1, 0, 5, tzinfo=UTC)
SPECS = {
    "cron": ScheduleSpec(kind="cron", cron_expression="*/5 * * * *", timezone="Europe/Berlin"),
    "daily": ScheduleSpec(kind="daily", time_of_day=clock(0, 5), timezone="UTC"),
}


def add_many(conn: psycopg.Connection[dict[str, Any]], spec: ScheduleSpec, n: int) -> None:
    """N schedules of one spec, all due at DUE."""
    for i in range(n):
        store.schedule_insert(
            conn,
            {
                "name": f"s{i}",
                "job_type": "noop",
                "metadata": {},
                "user_id": None,
                "priority": 0,
                "file_id": None,
                "business_description": None,
                "timeout_seconds": None,
                "max_retries": None,
                "kind": spec.kind,
                "run_at": None,
                "interval_seconds": None,
                "time_of_day": spec.time_of_day,
                "weekdays": None,
                "day_of_month": None,
                "cron_expression": spec.cron_expression,
                "timezone": spec.timezone,
                "start_at": None,
                "end_at": None,
                "max_executions": None,
                "enabled": True,
                "next_run_at": first_run(spec, T0),
            },
        )


def fire_all(dsn: str, daemons: int) -> int:
    """Fire every due schedule with that many racing daemons; the jobs they enqueued."""
    fired: list[int] = []

    def daemon(name: str) -> None:
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as own:
            while batch := fire_due(own, name, now=DUE):
                fired.append(sum(f.outcome == FIRED for f in batch))

    threads = [threading.Thread(target=daemon, args=(f"w{i}",)) for i in range(daemons)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(fired)


def main() -> None:
    """Measure and print JSON lines."""
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--dsn", default=os.environ.get("JOBCRON_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("-n", type=int, default=1000)
    args = parser.parse_args()
    for kind, spec in SPECS.items():
        for daemons in (1, 4):
            name = f"jobcron_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.dsn, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            try:
                dsn = make_conninfo(args.dsn, dbname=name)
                with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
                    migrate.migrate(conn)
                    add_many(conn, spec, args.n)
                    started = time.perf_counter()
                    jobs = fire_all(dsn, daemons)
                    seconds = time.perf_counter() - started
                    assert jobs == args.n, f"{jobs} jobs for {args.n} occurrences"
                print(
                    json.dumps(
                        {
                            "kind": kind,
                            "daemons": daemons,
                            "occurrences": args.n,
                            "seconds": round(seconds, 3),
                            "ms_per_occurrence": round(seconds / args.n * 1000, 3),
                            "occurrences_per_second": round(args.n / seconds),
                        }
                    )
                )
            finally:
                with psycopg.connect(args.dsn, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
