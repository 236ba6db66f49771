"""Workloads built on the feature benchmarks: operator commands, bulk enqueue, analysis memory."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import analysis_memory, ops
from bench.harness import Result, Run, Server, check, connect
from bench.workloads import Sizes
from jobcron.config import load_config


def run_ops(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """status / jobs list latency on a big table, and bulk enqueue rates (CLI path, Python API)."""
    dsn = server.fresh()
    try:
        with connect(dsn) as conn:
            ops.build(conn, finished=sizes.depth_rows)
            config = load_config(None, {"DATABASE_URL": dsn})
            lat = ops.latencies(conn, config)
            table = f"{sizes.depth_rows:,} finished + 10,000 pending"
            typical = {
                k: v["median_ms"]
                for k, v in lat.items()
                if (k == "status" or k.startswith("jobs_list")) and not k.endswith("worst_case")
            }
            run.add(
                Result(
                    "ops",
                    f"status, {table}",
                    lat["status"]["median_ms"],
                    "ms",
                    "<= 200",
                    check(lat["status"]["median_ms"], "<=", 200),
                )
            )
            slowest = max((v, k) for k, v in typical.items() if k != "status")
            run.add(
                Result(
                    "ops",
                    "jobs list, slowest of 9 filter sets",
                    slowest[0],
                    "ms",
                    "<= 200",
                    check(slowest[0], "<=", 200),
                    slowest[1],
                )
            )
            rare = lat["jobs_list_user_rare_worst_case"]["median_ms"]
            run.add(
                Result(
                    "ops",
                    "jobs list --user (a user with one 40-day-old job)",
                    rare,
                    "ms",
                    "<= 200",
                    check(rare, "<=", 200),
                    "no index covers a user's finished jobs; --since bounds it",
                )
            )
            with tempfile.TemporaryDirectory() as folder:
                rates = ops.bulk_rates(conn, Path(folder), count=sizes.memory_jobs)
            cli = max(rates["cli_bulk_jsonl_rows_per_s"])
            api = max(rates["api_enqueue_many_rows_per_s"])
            ceiling = max(rates["server_insert_select_rows_per_s"])
            run.add(
                Result(
                    "enqueue",
                    f"job_cron enqueue --bulk (JSON lines, {sizes.memory_jobs:,})",
                    cli,
                    "jobs/s",
                    ">= 50000",
                    check(cli, ">=", 50_000),
                )
            )
            run.add(
                Result("enqueue", "jobcron.enqueue_many", api, "jobs/s", ">= 50000", check(api, ">=", 50_000))
            )
            run.add(
                Result(
                    "enqueue",
                    "the server alone: INSERT ... SELECT of the same rows",
                    ceiling,
                    "rows/s",
                    note="the ceiling for any client",
                )
            )
            run.add(Result("enqueue", "bulk enqueue / the server's own insert rate", cli / ceiling, "x"))
    finally:
        server.drop(dsn)


def run_analysis(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """Peak RSS and speed of the analysis workflow on a generated CSV (200 MB in full mode)."""
    megabytes = 200 if sizes.repeats > 1 else 20
    figures = analysis_memory.run(megabytes=megabytes)
    run.add(
        Result(
            "analysis",
            f"peak RSS analysing a {figures['file_mb']:.0f} MB CSV",
            figures["peak_rss_mb"],
            "MB",
            f"<= {figures['bound_mb']}",
            bool(figures["pass"]),
            f"{figures['rows']:,} rows",
        )
    )
    run.add(
        Result(
            "analysis", "analysis speed", figures["rows_per_s"], "rows/s", note=f"{figures['mb_per_s']} MB/s"
        )
    )
