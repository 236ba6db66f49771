"""Job dependencies (migration 0009): what a graph of jobs costs the drain, against the same number of
independent jobs.

`python -m bench --only pipelines`: per fleet (1 daemon, then 4), one database and one set of inline
daemons started once, idle on an empty queue. Each round enqueues each shape in turn through
jobcron.enqueue, the whole shape in one transaction (so its jobs appear to the daemons at one
commit), waits for it to drain, and takes jobs/s from the database's own clock (first claim to last
completion), then deletes the jobs and vacuums before the next shape:

- independent: N noop jobs (the reference);
- fan-out: 1 parent + N children depending on it (one trigger releases N jobs);
- fan-in: N parents + 1 child depending on all of them (N settles on one child row);
- chain: N jobs, each depending on the previous one (serial by construction: every job is released by
  the record of the one before, and the recording daemon claims it in the same transaction).

Figures are medians over the rounds; each ratio is the median of the per-round ratios to the
independent drain of the same round (neighbours in time; the order of the shapes alternates round by
round). The target (>= 0.8) is on the 1-daemon ratios. The 4-daemon ratios are figures without a
target: they did not hold run after run (a fan-in's parents all update one child row, so their records
queue on its row lock; every link of a chain wakes the idle daemons for a job they cannot take).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

import jobcron
from bench.harness import Result, Run, Server, check, connect, daemons, drain_rate, median, wait_until
from bench.workloads import Sizes, _config

N = 1000
FLEETS = (1, 4)
TARGET = 0.8
WARM_UP = 300  # independent jobs drained (not counted) by a fresh fleet: connections, plans, caches
UNFINISHED = "SELECT count(*) = 0 FROM processing_jobs WHERE status IN ('waiting', 'pending', 'processing')"


def _independent(conn: Any, n: int) -> int:
    for _ in range(n):
        jobcron.enqueue(conn, "noop")
    return n


def _fan_out(conn: Any, n: int) -> int:
    parent = jobcron.enqueue(conn, "noop")
    for _ in range(n):
        jobcron.enqueue(conn, "noop", depends_on=[parent])
    return n + 1


def _fan_in(conn: Any, n: int) -> int:
    parents = [jobcron.enqueue(conn, "noop") for _ in range(n)]
    jobcron.enqueue(conn, "noop", depends_on=parents)
    return n + 1


def _chain(conn: Any, n: int) -> int:
    previous = jobcron.enqueue(conn, "noop")
    for _ in range(n - 1):
        previous = jobcron.enqueue(conn, "noop", depends_on=[previous])
    return n


SHAPES: dict[str, tuple[str, Callable[[Any, int], int]]] = {
    "independent": (f"{N} independent noop jobs", _independent),
    "fan-out": (f"fan-out, 1 parent + {N} children", _fan_out),
    "fan-in": (f"fan-in, {N} parents + 1 child", _fan_in),
    "chain": (f"chain of {N}", _chain),
}


def drain_shape(dsn: str, conn: Any, shape: str, logs: list[Path]) -> float:
    """Enqueue one shape in one transaction, wait until every job completed; jobs/s first claim to last end."""
    with psycopg.connect(dsn, row_factory=dict_row) as writer:  # not autocommit: one commit for the shape
        jobs = SHAPES[shape][1](writer, N)
        writer.commit()
    if not wait_until(conn, UNFINISHED, 600, 0.05):
        raise RuntimeError(f"{shape} did not drain; see {logs[0]}")
    done, rate = drain_rate(conn)
    row = conn.execute("SELECT count(*) AS n FROM processing_jobs").fetchone()
    assert done == jobs == row["n"], (shape, done, jobs, row["n"])  # nothing cancelled, nothing lost
    twice = conn.execute("SELECT count(*) AS n FROM processing_jobs WHERE attempts <> 1").fetchone()
    assert twice["n"] == 0, f"{shape}: a job ran other than once"
    # the next shape starts from the same table: no rows, no dead tuples
    conn.execute("DELETE FROM processing_jobs")
    conn.execute("VACUUM processing_jobs, job_dependencies")
    return rate


def measure_fleet(dsn: str, fleet: int, rounds: int, log_dir: Path) -> dict[str, list[float]]:
    """Jobs/s of every shape, round by round, on one database with one fleet of `fleet` daemons."""
    rates: dict[str, list[float]] = {shape: [] for shape in SHAPES}
    with (
        connect(dsn) as conn,
        daemons(dsn, fleet, _config(), "--interval", "5", log_dir=log_dir) as group,
    ):
        group.wait_ready(conn)
        with psycopg.connect(dsn, row_factory=dict_row) as writer:
            _independent(writer, WARM_UP)
            writer.commit()
        if not wait_until(conn, UNFINISHED, 120, 0.05):
            raise RuntimeError(f"warm-up did not drain; see {group.logs[0]}")
        conn.execute("DELETE FROM processing_jobs")
        conn.execute("VACUUM processing_jobs, job_dependencies")
        for i in range(rounds):
            order = list(SHAPES) if i % 2 == 0 else list(reversed(SHAPES))
            for shape in order:
                rates[shape].append(drain_shape(dsn, conn, shape, group.logs))
                time.sleep(0.2)  # every daemon back to its idle wait
        codes = group.stop()
        assert codes == [0] * fleet, f"daemons exited {codes}; see {group.logs}"
    return rates


def run_pipelines(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """Drain rates of fan-out, fan-in and chain as ratios to independent jobs, for 1 and 4 daemons."""
    rounds = max(5, sizes.repeats * 5)  # a shared machine: one round can be off by 2x either way
    dsn = server.fresh()
    try:
        for fleet in FLEETS:
            rates = measure_fleet(dsn, fleet, rounds, log_dir)
            base = rates["independent"]
            label = f"{fleet} daemon{'s' if fleet > 1 else ''}"
            run.add(
                Result(
                    "pipelines",
                    f"{label}: {SHAPES['independent'][0]}",
                    median(base),
                    "jobs/s",
                    note=f"median of {rounds} {sorted(round(r) for r in base)}",
                )
            )
            for shape in ("fan-out", "fan-in", "chain"):
                name = SHAPES[shape][0]
                ratios = [x / y for x, y in zip(rates[shape], base, strict=True)]
                ratio = median(ratios)
                run.add(
                    Result(
                        "pipelines",
                        f"{label}: {name}",
                        median(rates[shape]),
                        "jobs/s",
                        note=f"median of {rounds} {sorted(round(r) for r in rates[shape])}",
                    )
                )
                target: dict[str, Any] = {}
                note = f"median of {rounds} per-round ratios {sorted(round(r, 3) for r in ratios)}"
                if fleet == 1:
                    target = {"target": f">= {TARGET:g}", "passed": check(ratio, ">=", TARGET)}
                elif shape == "chain":
                    note += "; serial by construction: a figure, the target is on 1 daemon"
                else:
                    note += "; a figure, the target is on 1 daemon"
                run.add(
                    Result("pipelines", f"{label}: {name} / independent", ratio, "x", note=note, **target)
                )
    finally:
        server.drop(dsn)
