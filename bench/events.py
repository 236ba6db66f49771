"""Completion events (migration 0003): what the trigger costs the drain, and what wait() saves a caller.

`python -m bench --only events` (quick) or `--full`:
- drain: jobs/s of real daemons draining noop jobs with the events trigger and with it disabled
  (`ALTER TABLE ... DISABLE TRIGGER`), alternating run by run so both see the same machine; the
  trigger runs also keep an application LISTENing on jobcron_events and reading every payload.
- latency: one client enqueues a noop job and learns it finished, one job at a time against one
  idle daemon: jobcron.wait() (a connection of its own per call), a Waiter (one connection kept),
  the same two of jobcron.aio on an AsyncConnection, and a loop polling the row every 50 ms,
  interleaved in one run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

import jobcron
import jobcron.aio
from bench.harness import Result, Run, Server, connect, daemons, drain_rate, median, percentile, wait_until
from bench.workloads import Sizes, _config, _insert_noop
from jobcron.results import Waiter

TRIGGERS = ("processing_jobs_collect_events", "processing_jobs_notify_events")


class Reader:
    """An application listening on jobcron_events, reading every payload until stopped."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute("LISTEN jobcron_events")
        self.payloads = 0
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._halt.is_set():
            for _ in self.conn.notifies(timeout=0.2):
                self.payloads += 1

    def close(self) -> None:
        self._halt.set()
        self._thread.join(5)
        self.conn.close()


def drain_once(
    server: Server, count: int, jobs: int, events: bool, log_dir: Path, listen: bool = True, setup: str = ""
) -> tuple[float, int]:
    """Jobs/s of `count` inline daemons draining `jobs` noop jobs; and payloads a listener read."""
    dsn = server.fresh()
    reader: Reader | None = None
    try:
        with connect(dsn) as conn:
            if setup:
                conn.execute(setup)
            if not events:
                for trigger in TRIGGERS:
                    conn.execute(f"ALTER TABLE processing_jobs DISABLE TRIGGER {trigger}")
            elif listen:
                reader = Reader(dsn)
            with daemons(dsn, count, _config(), "--interval", "5", log_dir=log_dir) as group:
                group.wait_ready(conn)
                _insert_noop(conn, jobs)
                if not wait_until(
                    conn, "SELECT count(*) = 0 FROM processing_jobs WHERE status <> 'completed'", 600, 0.2
                ):
                    raise RuntimeError(f"drain did not finish; see {group.logs[0]}")
                done, rate = drain_rate(conn)
                assert done == jobs, (done, jobs)
            time.sleep(0.3)
            return rate, (reader.payloads if reader else 0)
    finally:
        if reader is not None:
            reader.close()
        server.drop(dsn)


def run_drain_overhead(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """Drain with the trigger / without, for 1 and 4 daemons, alternating; the median of the ratios."""
    repeats = max(5, sizes.repeats * 5)
    for count in (1, 4):
        ratios, with_rates, without_rates, payloads = [], [], [], []
        for i in range(repeats):
            # alternate which goes first, so a drift of the machine does not favour one side
            order = (True, False) if i % 2 == 0 else (False, True)
            got = {}
            for events in order:
                got[events] = drain_once(server, count, sizes.drain_jobs, events, log_dir)
            with_rates.append(got[True][0])
            without_rates.append(got[False][0])
            payloads.append(got[True][1])
            ratios.append(got[True][0] / got[False][0])
        run.add(Result("events", f"{count} daemon(s) drain, trigger on", median(with_rates), "jobs/s"))
        run.add(Result("events", f"{count} daemon(s) drain, trigger off", median(without_rates), "jobs/s"))
        run.add(
            Result(
                "events",
                f"{count} daemon(s) drain, on / off",
                median(ratios),
                "x",
                note=f"median of {repeats} pairs {sorted(round(r, 3) for r in ratios)}; "
                f"{median(payloads):.0f} payloads read per {sizes.drain_jobs} jobs",
            )
        )


def _poll(conn: Any, job_id: str, gap: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT status FROM processing_jobs WHERE id = %s", (job_id,)).fetchone()
        if row["status"] in ("completed", "failed", "cancelled"):
            return
        time.sleep(gap)
    raise RuntimeError(f"job {job_id} not finished in {timeout} s")


LATENCY_WAYS = ("wait", "waiter", "aio_wait", "aio_waiter", "poll")
LATENCY_LABELS = {
    "wait": "jobcron.wait() (own connection)",
    "waiter": "Waiter.wait() (connection kept)",
    "aio_wait": "jobcron.aio.wait() (own connection)",
    "aio_waiter": "AsyncWaiter.wait() (connection kept)",
    "poll": "poll every 50 ms",
}


async def _latency_samples(dsn: str, samples: int, log_dir: Path) -> dict[str, list[float]]:
    """ms per job for every way, interleaved one job at a time against one idle daemon.

    The loop is asyncio's so that the async ways run as an application would run them; the sync ways
    block it while they wait, which is what they do in a sync application too.
    """
    figures: dict[str, list[float]] = {how: [] for how in LATENCY_WAYS}
    with (
        connect(dsn) as conn,
        Waiter(conn) as waiter,
        daemons(dsn, 1, _config(), "--interval", "5", log_dir=log_dir) as group,
    ):
        group.wait_ready(conn)
        async with (
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn,
            jobcron.aio.AsyncWaiter(aconn) as awaiter,
        ):
            for i in range(samples * len(LATENCY_WAYS)):
                how = LATENCY_WAYS[i % len(LATENCY_WAYS)]  # interleaved: the same daemon, the same moment
                began = time.perf_counter()
                if how.startswith("aio_"):
                    job_id = await jobcron.aio.enqueue(aconn, "noop")
                    if how == "aio_wait":
                        await jobcron.aio.wait(aconn, job_id, timeout=10)
                    else:
                        await awaiter.wait(job_id, timeout=10)
                else:
                    job_id = jobcron.enqueue(conn, "noop")
                    if how == "wait":
                        jobcron.wait(conn, job_id, timeout=10)
                    elif how == "waiter":
                        waiter.wait(job_id, timeout=10)
                    else:
                        _poll(conn, job_id, 0.05, 10)
                figures[how].append((time.perf_counter() - began) * 1000)
                await asyncio.sleep(0.02)
    return figures


def run_latency(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """ms from enqueue to the client knowing the job finished: sync and asyncio waits, polling every 50 ms."""
    samples = 60 if sizes.repeats == 1 else 300
    dsn = server.fresh()
    try:
        figures = asyncio.run(_latency_samples(dsn, samples, log_dir))
    finally:
        server.drop(dsn)
    for how in LATENCY_WAYS:
        for q in (50, 99):
            run.add(
                Result(
                    "events",
                    f"enqueue -> known, {LATENCY_LABELS[how]}, p{q}",
                    percentile(figures[how], q),
                    "ms",
                    note=f"{len(figures[how])} jobs",
                )
            )


def run_events(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """Both event figures."""
    run_latency(run, server, sizes, log_dir)
    run_drain_overhead(run, server, sizes, log_dir)
