"""What every workload needs: a server, throwaway databases, real daemon processes, figures."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from jobcron import migrate

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
Conn = psycopg.Connection[dict[str, Any]]


@dataclass
class Result:
    """One figure, and the target it is judged against when there is one."""

    workload: str
    name: str
    value: float
    unit: str
    target: str | None = None
    passed: bool | None = None
    note: str = ""


@dataclass
class Run:
    """Everything one bench run measured."""

    mode: str
    server: str
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, result: Result) -> Result:
        """Record a figure and print it as it comes."""
        self.results.append(result)
        verdict = "" if result.passed is None else ("  PASS" if result.passed else "  MISS")
        target = f"  (target {result.target})" if result.target else ""
        print(
            f"  {result.workload:<9} {result.name:<44} {result.value:>12.2f} {result.unit:<8}{target}{verdict}"
        )
        return result

    def write(self, path: Path) -> None:
        """The whole run as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {**asdict(self), "results": [asdict(r) for r in self.results]}
        path.write_text(json.dumps(data, indent=2) + "\n")


def check(value: float, op: str, bound: float) -> bool:
    """value op bound, for targets written as '>= 1.0' or '<= 5'."""
    return value >= bound if op == ">=" else value <= bound


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Server:
    """The PostgreSQL the bench runs on: JOBCRON_BENCH_DSN / JOBCRON_TEST_DSN, else an embedded server."""

    def __init__(self) -> None:
        self._embedded: Any = None
        dsn = os.environ.get("JOBCRON_BENCH_DSN") or os.environ.get("JOBCRON_TEST_DSN")
        if dsn:
            self.admin_dsn, self.source = dsn, "env"
        else:
            from jobcron.dev.embedded import EmbeddedServer

            # fsync stays on: the figures are compared with pgbench on the same server either way,
            # but a server that never flushes would flatter the commit-bound workloads
            self._embedded = EmbeddedServer(REPO / ".state" / "bench-pg")
            self._embedded.start()
            self.admin_dsn, self.source = self._embedded.admin_dsn(), "embedded"
        self._template: str | None = None
        self._made: list[str] = []

    def template(self) -> str:
        """A migrated database that workloads copy."""
        if self._template is None:
            name = f"jobcron_bench_tpl_{uuid.uuid4().hex[:8]}"
            self._create(name, None)
            with psycopg.connect(self.dsn(name), autocommit=True, row_factory=dict_row) as conn:
                migrate.migrate(conn)
            self._template = name
        return self._template

    def fresh(self) -> str:
        """A new migrated database; returns its DSN."""
        name = f"jobcron_bench_{uuid.uuid4().hex[:10]}"
        self._create(name, self.template())
        return self.dsn(name)

    def dsn(self, dbname: str) -> str:
        """DSN of a database on this server."""
        return make_conninfo(self.admin_dsn, dbname=dbname)

    def _create(self, name: str, template: str | None) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            admin.execute(query)
        self._made.append(name)

    def drop(self, dsn: str) -> None:
        """Drop one workload's database as soon as it is measured (they can be large)."""
        name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self._made:
            self._made.remove(name)

    def close(self) -> None:
        """Drop every database this run made (the template last); stop an embedded server."""
        for name in reversed(self._made):
            with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self._made.clear()
        if self._embedded is not None:
            self._embedded.stop()


def connect(dsn: str) -> Conn:
    """An autocommit connection for set-up and read-back."""
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row)


def drain_rate(conn: Conn, where: str = "status = 'completed'") -> tuple[int, float]:
    """Jobs finished and jobs/s from the database's own clock: first claim to last completion."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) AS n, extract(epoch FROM max(completed_at) - min(started_at))::float8 AS s "
            "FROM processing_jobs WHERE {}"
        ).format(sql.SQL(where))
    ).fetchone()
    assert row is not None
    n, seconds = int(row["n"]), float(row["s"] or 0.0)
    return n, (n / seconds if seconds > 0 else 0.0)


def wait_until(conn: Conn, query: str, timeout: float, poll: float = 0.1) -> bool:
    """Poll a boolean query until it is true or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(query).fetchone()
        if row and next(iter(row.values())):
            return True
        time.sleep(poll)
    return False


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Daemons:
    """N real `job_cron run` processes on one database, started and stopped together."""

    def __init__(self, dsn: str, count: int, config: dict[str, Any], *args: str, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = log_dir / f"config-{uuid.uuid4().hex[:6]}.json"
        self.config_path.write_text(json.dumps(config))
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "PYTHONPATH": str(REPO),
            "JOB_CRON_LOG_FORMAT": "json",
        }
        env.pop("POSTGRES_URL", None)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        for i in range(count):
            log = log_dir / f"daemon-{uuid.uuid4().hex[:6]}-{i}.log"
            self.logs.append(log)
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "jobcron", "--config", str(self.config_path), "run", *args],
                        cwd=REPO,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=out,
                    )
                )
        self.dsn = dsn

    def wait_ready(self, conn: Conn, timeout: float = 60) -> None:
        """Until every daemon has registered and is idle (connected, schema checked, listening)."""
        want = len(self.procs)
        if not wait_until(conn, f"SELECT count(*) >= {want} FROM job_workers WHERE state = 'idle'", timeout):
            raise RuntimeError(f"daemons not ready in {timeout}s; see {self.logs[0]}")
        time.sleep(0.3)  # the LISTEN connection comes up just after the worker row

    def pids(self) -> list[int]:
        """Process ids."""
        return [p.pid for p in self.procs]

    def stop(self, timeout: float = 60) -> list[int | None]:
        """SIGTERM all, wait for clean exits; SIGKILL stragglers."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(None)
        return codes


@contextlib.contextmanager
def daemons(dsn: str, count: int, config: dict[str, Any], *args: str, log_dir: Path) -> Iterator[Daemons]:
    """Daemons for the length of a with-block."""
    group = Daemons(dsn, count, config, *args, log_dir=log_dir)
    try:
        yield group
    finally:
        group.stop()


def median(values: list[float]) -> float:
    """The median, NaN for none."""
    return statistics.median(values) if values else float("nan")
