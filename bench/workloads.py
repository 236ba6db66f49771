"""The workloads: limit, drain, latency, depth, memory. Each records figures on a Run."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import (
    REPO,
    Result,
    Run,
    Server,
    check,
    connect,
    daemons,
    drain_rate,
    median,
    percentile,
    rss_mb,
    wait_until,
)

# A daemon as the bench runs it: inline noop, real JSON log lines at info, retention off.
BASE_CONFIG: dict[str, Any] = {
    "job_processing": {"execution_mode": "inline"},
    "scheduler_settings": {"cleanup_completed_jobs_days": 0},
    "daemon": {"stale_after_seconds": 3600},
    "logging": {"level": "info", "format": "json"},
    "workflows": {"stamp": "bench.workflows:stamp"},
}

# The minimal lifecycle on jobcron's own table: claim (one transaction), complete (another).
LIFECYCLE_CLAIM = (
    "UPDATE processing_jobs j SET status = 'processing', attempts = j.attempts + 1, started_at = now(), "
    "locked_by = 'limit', locked_at = now(), heartbeat_at = now(), lease_token = gen_random_uuid(), "
    "updated_at = now() WHERE j.id = (SELECT p.id FROM processing_jobs p WHERE p.status = 'pending' "
    "AND p.scheduled_at <= now() ORDER BY p.scheduled_at, p.seq LIMIT 1 FOR UPDATE SKIP LOCKED) "
    "RETURNING j.id AS job_id"
)
LIFECYCLE_COMPLETE = (
    "UPDATE processing_jobs SET status = 'completed', completed_at = now(), heartbeat_at = NULL, "
    "updated_at = now() WHERE id = {id}"
)


@dataclass(frozen=True)
class Sizes:
    """How big each workload is in a mode."""

    lifecycle_jobs: int
    drain_jobs: int
    latency_burst: int
    latency_sparse: int
    depth_rows: int
    depth_measure: int
    memory_jobs: int
    repeats: int


QUICK = Sizes(1000, 1500, 50, 12, 50_000, 800, 4000, 1)
FULL = Sizes(10_000, 10_000, 300, 120, 1_000_000, 5000, 100_000, 2)


def _config(**sections: dict[str, Any]) -> dict[str, Any]:
    merged = {k: dict(v) for k, v in BASE_CONFIG.items()}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    return merged


def _insert_noop(conn: Any, n: int, extra: str = "") -> None:
    conn.execute(
        f"INSERT INTO processing_jobs (job_type) SELECT 'noop' FROM generate_series(1, {int(n)}){extra}"
    )


# --- limit -----------------------------------------------------------------------------------------


def pgbench_rate(server: Server, clients: int, per_client: int) -> float | None:
    """Jobs/s of pgbench running the two-transaction lifecycle; None without pgbench."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        return None
    dsn = server.fresh()
    try:
        with connect(dsn) as conn:
            _insert_noop(conn, clients * per_client + 100)
            conn.execute("VACUUM ANALYZE processing_jobs")
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write(LIFECYCLE_CLAIM + " \\gset\n" + LIFECYCLE_COMPLETE.format(id=":job_id") + ";\n")
        out = subprocess.run(
            [
                pgbench,
                "-n",
                "-M",
                "prepared",
                "-f",
                script.name,
                "-c",
                str(clients),
                "-j",
                str(min(clients, 2)),
                "-t",
                str(per_client),
                dsn,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        Path(script.name).unlink()
        match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
        if out.returncode != 0 or match is None:
            raise RuntimeError(f"pgbench failed: {out.stderr.strip()[-500:]}")
        return float(match.group(1))
    finally:
        server.drop(dsn)


def psycopg_rate(server: Server, jobs: int) -> float:
    """Jobs/s of a bare psycopg loop doing the same two statements, each its own transaction."""
    dsn = server.fresh()
    try:
        with connect(dsn) as conn:
            _insert_noop(conn, jobs + 10)
            conn.execute("VACUUM ANALYZE processing_jobs")
            conn.prepare_threshold = 0
            complete = LIFECYCLE_COMPLETE.format(id="%(id)s")
            began = time.perf_counter()
            for _ in range(jobs):
                row = conn.execute(LIFECYCLE_CLAIM).fetchone()
                assert row is not None
                conn.execute(complete, {"id": row["job_id"]})
            return jobs / (time.perf_counter() - began)
    finally:
        server.drop(dsn)


# --- drain -----------------------------------------------------------------------------------------


def daemon_drain_rate(server: Server, count: int, mode: str, jobs: int, log_dir: Path) -> float:
    """Jobs/s of `count` real daemons draining `jobs` noop jobs inserted at once, from database timestamps."""
    dsn = server.fresh()
    try:
        with (
            connect(dsn) as conn,
            daemons(
                dsn,
                count,
                _config(job_processing={"execution_mode": mode}),
                "--interval",
                "5",
                log_dir=log_dir,
            ) as group,
        ):
            group.wait_ready(conn)
            _insert_noop(conn, jobs)  # one statement: one notification wakes every daemon
            if not wait_until(
                conn, "SELECT count(*) = 0 FROM processing_jobs WHERE status <> 'completed'", 600, 0.2
            ):
                raise RuntimeError(f"drain did not finish; see {group.logs[0]}")
            done, rate = drain_rate(conn)
            assert done == jobs, (done, jobs)
            return rate
    finally:
        server.drop(dsn)


def run_limit_and_drain(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """Daemon throughput as ratios to pgbench measured next to it, repeated, medians kept."""
    ratios: dict[int, list[float]] = {1: [], 4: []}
    limits: dict[int, list[float]] = {1: [], 4: []}
    rates: dict[int, list[float]] = {1: [], 4: []}
    for _ in range(sizes.repeats):
        for clients in (1, 4):
            limit = pgbench_rate(server, clients, sizes.lifecycle_jobs // clients)
            rate = daemon_drain_rate(server, clients, "inline", sizes.drain_jobs, log_dir)
            rates[clients].append(rate)
            if limit:
                limits[clients].append(limit)
                ratios[clients].append(rate / limit)
    bare = psycopg_rate(server, sizes.lifecycle_jobs)
    run.add(Result("limit", "bare psycopg loop, 2 transactions/job", bare, "jobs/s"))
    for clients in (1, 4):
        if limits[clients]:
            run.add(
                Result(
                    "limit",
                    f"pgbench {clients} client(s), 2 transactions/job",
                    median(limits[clients]),
                    "jobs/s",
                )
            )
        run.add(Result("drain", f"{clients} daemon(s), inline noop", median(rates[clients]), "jobs/s"))
        if ratios[clients]:
            ratio = median(ratios[clients])
            run.add(
                Result(
                    "drain",
                    f"{clients} daemon(s) / pgbench {clients} client(s)",
                    ratio,
                    "x",
                    ">= 1.0",
                    check(ratio, ">=", 1.0),
                    f"median of {len(ratios[clients])}",
                )
            )
    process_rates: dict[int, list[float]] = {1: [], 4: []}
    process_ratio: list[float] = []
    for _ in range(sizes.repeats):
        for count in (1, 4):
            inline = (
                daemon_drain_rate(server, count, "inline", sizes.drain_jobs, log_dir) if count == 1 else None
            )
            rate = daemon_drain_rate(server, count, "process", sizes.drain_jobs, log_dir)
            process_rates[count].append(rate)
            if inline:  # measured next to each other: the ratio of neighbours in time
                process_ratio.append(rate / inline)
    for count in (1, 4):
        per = median(process_rates[count]) / count
        run.add(
            Result(
                "drain",
                f"{count} daemon(s), process mode noop, per daemon",
                per,
                "jobs/s",
                ">= 300",
                check(per, ">=", 300),
            )
        )
    ratio = median(process_ratio)
    run.add(
        Result(
            "drain",
            "1 daemon: process mode / inline",
            ratio,
            "x",
            ">= 0.9",
            check(ratio, ">=", 0.9),
            f"median of {len(process_ratio)}, each pair run back to back",
        )
    )
    inline_one = median(rates[1])
    process_one = median(process_rates[1])
    run.add(
        Result(
            "drain",
            "process mode cost per job (1 daemon)",
            1000 / process_one - 1000 / inline_one,
            "ms",
            note="process minus inline, per job",
        )
    )


# --- latency ---------------------------------------------------------------------------------------


LATENCY_TARGETS = {"inline": {50: 2.0, 99: 5.0}, "process": {50: 1.0, 99: 3.0}}


def run_latency(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """Insert commit -> workflow start, with an idle daemon woken by LISTEN/NOTIFY, in both execution modes."""
    for mode, targets in LATENCY_TARGETS.items():
        dsn = server.fresh()
        config = _config(job_processing={"execution_mode": mode})
        try:
            with connect(dsn) as conn, daemons(dsn, 1, config, "--interval", "30", log_dir=log_dir) as group:
                group.wait_ready(conn)
                time.sleep(1.0)  # the warm job process is up by now (the daemon starts it at once)
                for label, count, gap in (
                    ("burst, 20 ms apart", sizes.latency_burst, 0.020),
                    ("sparse, 250 ms apart", sizes.latency_sparse, 0.250),
                ):
                    lat = _latencies(conn, count, gap)
                    for q in (50, 95, 99):
                        value = percentile(lat, q)
                        bound = targets.get(q)
                        run.add(
                            Result(
                                "latency",
                                f"{mode}, {label}: p{q}",
                                value,
                                "ms",
                                f"<= {bound:g}" if bound else None,
                                check(value, "<=", bound) if bound else None,
                                f"{len(lat)} jobs",
                            )
                        )
        finally:
            server.drop(dsn)


def _latencies(conn: Any, count: int, gap: float) -> list[float]:
    """Insert `count` stamp jobs `gap` apart; ms from each INSERT's commit to its workflow's start."""
    committed: dict[str, float] = {}
    for _ in range(count):
        row = conn.execute("INSERT INTO processing_jobs (job_type) VALUES ('stamp') RETURNING id").fetchone()
        committed[str(row["id"])] = time.time()  # autocommit: the INSERT has committed
        time.sleep(gap)
    wait_until(conn, "SELECT count(*) = 0 FROM processing_jobs WHERE status <> 'completed'", 60)
    rows = conn.execute(
        "SELECT id, (result->>'t')::float8 AS t FROM processing_jobs WHERE id = ANY(%s::uuid[])",
        (list(committed),),
    ).fetchall()
    conn.execute("DELETE FROM processing_jobs")
    return [max(0.0, (r["t"] - committed[str(r["id"])]) * 1000) for r in rows]


# --- depth -----------------------------------------------------------------------------------------


class Scenario:
    """A database built once; `measure()` drains `measure` jobs with one daemon, then tops the queue up."""

    def __init__(self, server: Server, setup: list[str], refill: str, config: dict[str, Any], log_dir: Path):
        self.server, self.refill, self.config, self.log_dir = server, refill, config, log_dir
        self.dsn = server.fresh()
        self.runs = 0
        with connect(self.dsn) as conn:
            for statement in setup:
                conn.execute(statement)
            conn.execute("VACUUM ANALYZE processing_jobs")  # what autovacuum would have done by now

    def measure(self, count: int) -> float:
        """Jobs/s of one daemon completing `count` jobs (it exits after --max-jobs), from the database's clock."""
        self.runs += 1
        worker = f"bench-depth-{self.runs}"
        args = ("--interval", "5", "--max-jobs", str(count), "--worker-id", worker)
        with connect(self.dsn) as conn:
            with daemons(self.dsn, 1, self.config, *args, log_dir=self.log_dir) as group:
                code = group.procs[0].wait(900)
                if code != 0:
                    raise RuntimeError(f"daemon exited {code}; see {group.logs[0]}")
            done, rate = drain_rate(conn, f"status = 'completed' AND locked_by = '{worker}'")
            assert done == count, (done, count)
            # the same depth for the next run: the drained jobs replaced, their rows as the scenario says
            conn.execute(self.refill.format(n=count, worker=worker))
            conn.execute("VACUUM processing_jobs")
            return rate

    def close(self) -> None:
        """Drop the database."""
        self.server.drop(self.dsn)


def run_depth(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """Claim rate as the table grows, as median ratios of runs that alternate with their baseline."""
    rows, measure = sizes.depth_rows, sizes.depth_measure
    pending = "INSERT INTO processing_jobs (job_type) SELECT 'noop' FROM generate_series(1, {n})"
    # the baseline and the deep queue keep no finished rows; the finished-rows scenario keeps them all
    drop_done = "DELETE FROM processing_jobs WHERE locked_by = '{worker}'; " + pending
    finished_rows = (
        "INSERT INTO processing_jobs (job_type, status, attempts, started_at, completed_at, locked_by) "
        f"SELECT 'noop', 'completed', 1, now(), now(), 'setup' FROM generate_series(1, {rows})"
    )
    users = "INSERT INTO processing_jobs (job_type, user_id) SELECT 'noop', 'u' || (g % 1000) FROM generate_series(1, {n}) g"
    busy_setup = [
        # 1,000 users each at the limit (a running job that keeps its lease) with 10 jobs queued first
        "INSERT INTO processing_jobs (job_type, user_id, status, attempts, started_at, heartbeat_at, locked_by, "
        "lease_token, user_slot) SELECT 'noop', 'busy' || g, 'processing', 1, now(), now() + interval '1 day', "
        "'setup', gen_random_uuid(), 1 FROM generate_series(1, 1000) g",
        "INSERT INTO processing_jobs (job_type, user_id, scheduled_at) "
        "SELECT 'noop', 'busy' || (g % 1000 + 1), now() - interval '1 hour' FROM generate_series(1, 10000) g",
        pending.format(n=10_000),
    ]
    limit_on = _config(job_processing={"execution_mode": "inline", "single_job_per_user": True})
    limit_off = _config(job_processing={"execution_mode": "inline", "single_job_per_user": False})
    made = {
        "shallow": Scenario(server, [pending.format(n=10_000)], drop_done, _config(), log_dir),
        "deep": Scenario(server, [pending.format(n=rows)], drop_done, _config(), log_dir),
        "finished": Scenario(server, [finished_rows, pending.format(n=10_000)], pending, _config(), log_dir),
        "users_on": Scenario(
            server,
            [users.format(n=10_000)],
            "DELETE FROM processing_jobs WHERE locked_by = '{worker}'; " + users,
            limit_on,
            log_dir,
        ),
        "users_off": Scenario(
            server,
            [users.format(n=10_000)],
            "DELETE FROM processing_jobs WHERE locked_by = '{worker}'; " + users,
            limit_off,
            log_dir,
        ),
        "busy": Scenario(server, busy_setup, drop_done, _config(), log_dir),
    }
    rates: dict[str, list[float]] = {name: [] for name in made}
    try:
        for _ in range(sizes.repeats):
            for name, scenario in made.items():  # interleaved, so each ratio compares neighbours in time
                # the busy-users case is slow by construction (see its note): fewer jobs say as much
                rates[name].append(scenario.measure(measure // 5 if name == "busy" else measure))
    finally:
        for scenario in made.values():
            scenario.close()

    def ratio(a: str, b: str) -> float:
        return median([x / y for x, y in zip(rates[a], rates[b], strict=True)])

    run.add(Result("depth", "claim rate, 10,000 pending", median(rates["shallow"]), "jobs/s"))
    value = ratio("deep", "shallow")
    run.add(
        Result(
            "depth",
            f"{rows:,} pending / 10,000 pending",
            value,
            "x",
            ">= 0.9",
            check(value, ">=", 0.9),
            f"median of {sizes.repeats}",
        )
    )
    value = ratio("finished", "shallow")
    run.add(
        Result(
            "depth",
            f"{rows:,} finished rows kept / none",
            value,
            "x",
            ">= 0.95",
            check(value, ">=", 0.95),
            f"median of {sizes.repeats}",
        )
    )
    value = ratio("users_on", "users_off")
    run.add(
        Result(
            "depth",
            "1,000 users: per-user limit on / off",
            value,
            "x",
            note=f"{median(rates['users_on']):.0f} vs {median(rates['users_off']):.0f} jobs/s",
        )
    )
    value = ratio("busy", "shallow")
    run.add(
        Result(
            "depth",
            "1,000 users at the limit with 10,000 jobs queued ahead / none",
            value,
            "x",
            note="each claim passes over them: one probe per busy user, not per job",
        )
    )


# --- memory ----------------------------------------------------------------------------------------


def run_memory(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """Daemon RSS idle, after a warm-up, and after many jobs (inline; the daemon process itself)."""
    dsn = server.fresh()
    try:
        with connect(dsn) as conn, daemons(dsn, 1, _config(), "--interval", "5", log_dir=log_dir) as group:
            group.wait_ready(conn)
            pid = group.pids()[0]
            idle = rss_mb(pid)
            done = 0
            warm = 0.0
            for batch in (1000, sizes.memory_jobs):
                _insert_noop(conn, batch)
                done += batch
                wait_until(
                    conn,
                    f"SELECT count(*) >= {done} FROM processing_jobs WHERE status = 'completed'",
                    900,
                    0.2,
                )
                conn.execute("DELETE FROM processing_jobs WHERE status = 'completed'")
                done = 0
                if not warm:
                    warm = rss_mb(pid)
            final = rss_mb(pid)
            run.add(Result("memory", "daemon RSS idle", idle, "MB", "<= 60", check(idle, "<=", 60)))
            run.add(Result("memory", "daemon RSS after 1,000 jobs", warm, "MB"))
            growth = final - warm
            run.add(
                Result(
                    "memory",
                    f"RSS growth over the next {sizes.memory_jobs:,} jobs",
                    growth,
                    "MB",
                    "<= 5",
                    check(growth, "<=", 5),
                    f"{final:.1f} MB at the end",
                )
            )
    finally:
        server.drop(dsn)


WORKLOADS = {
    "drain": run_limit_and_drain,
    "latency": run_latency,
    "depth": run_depth,
    "memory": run_memory,
}
__all__ = ["FULL", "QUICK", "REPO", "WORKLOADS", "Sizes"]
