"""Per-user limits at the scale applications have: thousands of users, several daemons, a burst of jobs.

Each scenario starts its daemons on an empty queue (so their claim plans are made there, as in
production), then inserts its jobs in one statement with no ANALYZE in between, and times the drain
from the database's own timestamps. Every figure is a ratio to the drain of the same number of jobs
without a user, measured in the same run by the same number of daemons, scenarios interleaved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import Result, Run, Server, check, connect, daemons, drain_rate, median, wait_until
from bench.workloads import Sizes, _config

JOBS = 10_000
FLEETS = (8, 2)

# The high-water mark of running jobs per user, from the database's claim and completion times (a
# slot is taken by the claim and freed by the record, so no two intervals of one user overlap past
# the limit; ends sort before starts at a tie: a record and the next claim share a transaction).
HIGH_WATER_MARK = """
WITH ev AS (
    SELECT user_id, started_at AS t, 1 AS d FROM processing_jobs WHERE user_id IS NOT NULL
    UNION ALL
    SELECT user_id, completed_at AS t, -1 AS d FROM processing_jobs WHERE user_id IS NOT NULL
)
SELECT coalesce(max(level), 0) AS hwm
FROM (SELECT sum(d) OVER (PARTITION BY user_id ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS level FROM ev) x
"""

# 1,000 users each at the limit: a running job whose lease stays fresh (its heartbeat is in the future,
# so no daemon rescues it), with 10 queued jobs each, all ahead of the free ones in queue order.
ADVERSARIAL_SETUP = [
    "INSERT INTO processing_jobs (job_type, user_id, status, attempts, started_at, heartbeat_at, locked_by, "
    "lease_token, user_slot) SELECT 'noop', 'busy' || g, 'processing', 1, now(), now() + interval '1 day', "
    "'setup', gen_random_uuid(), 1 FROM generate_series(1, 1000) g",
]
ADVERSARIAL_BURST = (
    "INSERT INTO processing_jobs (job_type, user_id, scheduled_at) "
    "SELECT 'noop', 'busy' || (g % 1000 + 1), now() - interval '1 hour' FROM generate_series(1, 10000) g; "
    f"INSERT INTO processing_jobs (job_type) SELECT 'noop' FROM generate_series(1, {JOBS})"
)


@dataclass(frozen=True)
class Scenario:
    """One shape of load: what is inserted at once, the limit, and which jobs the drain counts."""

    name: str
    label: str
    burst: str
    limit: int | None = 1
    setup: list[str] = field(default_factory=list)
    counted: str = "status = 'completed'"
    target: float | None = None
    check_limit: bool = False


def _users(expr: str) -> str:
    return f"INSERT INTO processing_jobs (job_type, user_id) SELECT 'noop', {expr} FROM generate_series(1, {JOBS}) g"


SCENARIOS = [
    Scenario("none", "no user", _users("NULL"), limit=None),
    Scenario("distinct", "10,000 distinct users, limit 1", _users("'u' || g"), target=0.8),
    Scenario("u1000", "1,000 users x 10 jobs, limit 1", _users("'u' || (g % 1000)"), target=0.8),
    Scenario("u1000_l3", "1,000 users x 10 jobs, limit 3", _users("'u' || (g % 1000)"), limit=3, target=0.8),
    Scenario(
        "u1000_runs",
        "1,000 users x 10 jobs in runs of one user, limit 1",
        _users("'u' || ((g - 1) / 10)"),
        check_limit=True,
    ),
    Scenario("u100", "100 users x 100 jobs, limit 1", _users("'u' || (g % 100)"), check_limit=True),
    Scenario(
        "adversarial",
        "1,000 users at the limit, 10,000 of their jobs ahead of 10,000 free ones",
        ADVERSARIAL_BURST,
        setup=ADVERSARIAL_SETUP,
        counted="status = 'completed' AND user_id IS NULL",
        target=0.5,
    ),
]


def drain(server: Server, scenario: Scenario, fleet: int, log_dir: Path) -> tuple[float, int]:
    """(jobs/s of the counted jobs, per-user high-water mark) for one scenario and fleet size."""
    dsn = server.fresh()
    single = scenario.limit is not None
    config = _config(
        job_processing={"execution_mode": "inline", "single_job_per_user": single},
        scheduler_settings={
            "max_concurrent_jobs_per_user": scenario.limit or 1,
            "cleanup_completed_jobs_days": 0,
        },
    )
    try:
        with connect(dsn) as conn:
            for statement in scenario.setup:
                conn.execute(statement)
            with daemons(dsn, fleet, config, "--interval", "5", log_dir=log_dir) as group:
                group.wait_ready(conn)
                conn.execute(
                    scenario.burst
                )  # daemons idle until now: their plans were made on an empty queue
                done = f"SELECT count(*) >= {JOBS} FROM processing_jobs WHERE {scenario.counted}"
                if not wait_until(conn, done, 900, 0.2):
                    raise RuntimeError(f"{scenario.name} did not drain; see {group.logs[0]}")
            n, rate = drain_rate(conn, scenario.counted)
            assert n == JOBS, (scenario.name, n)
            twice = conn.execute("SELECT count(*) AS n FROM processing_jobs WHERE attempts > 1").fetchone()
            assert twice is not None and twice["n"] == 0, f"{scenario.name}: a job ran twice"
            row = conn.execute(HIGH_WATER_MARK).fetchone() if scenario.check_limit else None
            return rate, int(row["hwm"]) if row else 0
    finally:
        server.drop(dsn)


def run_users(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """Drain rates with per-user limits, as ratios to the no-user drain, for 8 and 2 daemons."""
    for fleet in FLEETS:
        rates: dict[str, list[float]] = {s.name: [] for s in SCENARIOS}
        marks: dict[str, int] = {}
        for _ in range(sizes.repeats):
            for scenario in SCENARIOS:  # interleaved, so each ratio compares neighbours in time
                rate, hwm = drain(server, scenario, fleet, log_dir)
                rates[scenario.name].append(rate)
                marks[scenario.name] = max(marks.get(scenario.name, 0), hwm)
        base = rates["none"]
        run.add(Result("users", f"{fleet} daemons: no user", median(base), "jobs/s"))
        for scenario in SCENARIOS[1:]:
            ratio = median([x / y for x, y in zip(rates[scenario.name], base, strict=True)])
            note = f"{median(rates[scenario.name]):.0f} jobs/s"
            target: dict[str, Any] = {}
            if scenario.target is not None:
                target = {"target": f">= {scenario.target:g}", "passed": check(ratio, ">=", scenario.target)}
            if scenario.check_limit:
                limit = scenario.limit or 1
                note += f"; per-user high-water mark {marks[scenario.name]} (limit {limit})"
                target = {"target": f"high-water mark = {limit}", "passed": marks[scenario.name] == limit}
            run.add(Result("users", f"{fleet} daemons: {scenario.label}", ratio, "x", note=note, **target))
