"""jobcron through a real PgBouncer (Debian's package) in transaction pooling mode.

With the settings docs/deployment.md gives for it (`database.prepared_statements: false`,
`daemon.listen: false`, a short `daemon.interval_seconds`), real daemons drain a bulk enqueue,
rescue a dead worker's job and stop a cancelled one; the drain is timed through the pooler and
directly. With the defaults, the daemon stops at start naming the settings to change, and LISTEN
through the pooler never hears anything. Skipped, with the reason, when pgbouncer is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.acceptance.daemon import FAST, Daemon, job_cron, write_config
from tests.factories import insert_job, job

pytestmark = pytest.mark.acceptance

# what docs/deployment.md says a daemon behind a transaction-mode pooler needs
POOLED = {"JOB_CRON_DATABASE_PREPARED_STATEMENTS": "false"}
POOLED_DAEMON = {**FAST, "listen": False, "interval_seconds": 0.2}
DAEMONS = 2
JOBS = 300


@dataclass(frozen=True)
class Bouncer:
    url: str  # the test's own database, through the pooler
    version: str
    log: Path


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_pgbouncer(dsn: str, folder: Path, *settings: str) -> Iterator[Bouncer]:
    """pgbouncer in transaction pooling mode in front of dsn's database (plus settings), until the end."""
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip(
            "pgbouncer not installed: scripts/test.sh installs it when run as root (apt-get install pgbouncer)"
        )
    target = conninfo_to_dict(dsn)
    user = str(target.get("user") or "postgres")
    dbname = str(target["dbname"])
    server = f"host={target.get('host') or '127.0.0.1'} port={target.get('port') or 5432} dbname={dbname}"
    if target.get("password"):  # a server that asks for one (testcontainers): pgbouncer logs in with it
        server += f" password={target['password']}"
    port = free_port()
    # auth_type trust still needs the user in auth_file (else: FATAL "trust" authentication failed)
    users = folder / "userlist.txt"
    users.write_text(f'"{user}" ""\n')
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        f"[databases]\n{dbname} = {server}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {users}\n"
        "pool_mode = transaction\nlogfile =\npidfile =\n" + "".join(f"{line}\n" for line in settings)
    )
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    # pgbouncer refuses to run as root; with -u it reads its files first, then drops to that user
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
    log = folder / "pgbouncer.log"
    with log.open("w") as out:
        proc = subprocess.Popen([binary, *as_user, str(ini)], stdout=out, stderr=subprocess.STDOUT)
    url = f"postgresql://{user}@127.0.0.1:{port}/{dbname}"
    try:
        deadline = time.monotonic() + 15
        while True:  # up, and a query gets a server connection through it
            try:
                with psycopg.connect(url, connect_timeout=2) as probe:
                    probe.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"pgbouncer did not answer:\n{log.read_text()}"
                time.sleep(0.1)
        yield Bouncer(url=url, version=version, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def pgbouncer(dsn: str, tmp_path: Path) -> Iterator[Bouncer]:
    """A private pgbouncer, transaction pooling and its defaults otherwise, in front of the test's database."""
    with running_pgbouncer(dsn, tmp_path) as bouncer:
        yield bouncer


def until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until condition() held (polled every 20 ms); fails after timeout."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout, f"{what}: not within {timeout}s"
        time.sleep(0.02)
    return time.monotonic() - began


def count(conn: psycopg.Connection[dict[str, Any]], where: str, *params: Any) -> int:
    row = conn.execute(f"SELECT count(*) AS n FROM processing_jobs WHERE {where}", params).fetchone()
    assert row is not None
    return int(row["n"])


def start(
    daemons: list[Daemon], url: str, config: Path, prefix: str, env: dict[str, str] | None = None
) -> list[Daemon]:
    """DAEMONS daemons, ready; each also in daemons (the fixture kills whatever a failure left running)."""
    started = [Daemon(url, config, "--worker-id", f"{prefix}-{i}", env=env) for i in range(DAEMONS)]
    daemons.extend(started)
    for d in started:
        d.wait_event("worker_started", timeout=30)
    return started


@dataclass(frozen=True)
class Drain:
    wall: float  # from the start of `job_cron enqueue --bulk` to the last job completed (polled)
    span: float  # the database's clock: the first claim to the last completion

    def __str__(self) -> str:
        return f"{JOBS / self.span:.0f} jobs/s ({self.span:.2f}s claim to last completion, {self.wall:.2f}s wall)"


def drain(
    conn: psycopg.Connection[dict[str, Any]], url: str, env: dict[str, str] | None, batch: str, folder: Path
) -> Drain:
    """Bulk-enqueue JOBS noop jobs of this batch at url, and wait for the running daemons to finish them."""
    lines = [{"job_type": "noop", "metadata": {"batch": batch}} for _ in range(JOBS)]
    for n, line in enumerate(lines[-10:]):  # from the first dedup key on, rows pass a TEMP staging table
        line["dedup_key"] = f"{batch}-{n}"
    bulk = folder / f"{batch}.jsonl"
    bulk.write_text("".join(json.dumps(line) + "\n" for line in lines))
    began = time.monotonic()
    enqueued = job_cron("enqueue", "--bulk", str(bulk), url=url, env=env)
    assert enqueued.returncode == 0, enqueued.stderr
    assert f"enqueued {JOBS:,} job(s)" in enqueued.stdout, enqueued.stdout
    until(
        lambda: count(conn, "status = 'completed' AND metadata->>'batch' = %s", batch) == JOBS,
        30,
        f"{JOBS} {batch} jobs completed",
    )
    wall = time.monotonic() - began
    # every job ran exactly once: one attempt each
    assert count(conn, "metadata->>'batch' = %s AND attempts <> 1", batch) == 0
    row = conn.execute(
        "SELECT extract(epoch FROM max(completed_at) - min(started_at))::float8 AS span"
        " FROM processing_jobs WHERE metadata->>'batch' = %s",
        (batch,),
    ).fetchone()
    assert row is not None
    return Drain(wall=wall, span=row["span"])


def completions(daemons: list[Daemon]) -> Counter[str]:
    return Counter(line["job_id"] for d in daemons for line in d.events("job_completed"))


def test_daemons_drain_rescue_and_cancel_through_transaction_pooling(
    pgbouncer: Bouncer,
    dsn: str,
    conn: psycopg.Connection[dict[str, Any]],
    tmp_path: Path,
    daemons: list[Daemon],
) -> None:
    # a job of a daemon that died: processing, no heartbeat for years, its worker id nowhere
    dead = insert_job(
        conn, status="processing", heartbeat_at="2000-01-01T00:00:00Z", locked_by="died-long-ago"
    )
    pooled_config = write_config(
        tmp_path / "pooled.json", job_processing={"execution_mode": "inline"}, daemon=POOLED_DAEMON
    )
    pooled = start(daemons, pgbouncer.url, pooled_config, "pooled", env=POOLED)
    try:
        for d in pooled:
            started = d.wait_event("worker_started")
            assert started["listen"] is False
            assert started["config"]["database"]["prepared_statements"] is False
        through_pooler = drain(conn, pgbouncer.url, POOLED, "pooled", tmp_path)

        # every job ran exactly once: one attempt each (drain), one job_completed line in all the logs
        done = completions(pooled)
        batch = {
            r["id"]
            for r in conn.execute("SELECT id::text FROM processing_jobs WHERE metadata->>'batch' = 'pooled'")
        }
        assert len(batch) == JOBS and all(done[job_id] == 1 for job_id in batch)
        shares = [len(d.events("job_completed")) for d in pooled]

        # the dead worker's job was rescued by one of them and ran again: its second attempt
        until(lambda: job(conn, dead)["status"] == "completed", 10, "the rescued job completed")
        assert job(conn, dead)["attempts"] == 2 and done[dead] == 1
        assert any(dead in line["job_ids"] for d in pooled for line in d.events("jobs_rescued"))

        # a cancel: no LISTEN through the pooler, so it reaches the daemon on the job's heartbeat
        enqueued = job_cron(
            "enqueue", "--type", "sleep", "--metadata", '{"seconds": 30}', url=pgbouncer.url, env=POOLED
        )
        assert enqueued.returncode == 0, enqueued.stderr
        sleeper = enqueued.stdout.split()[-1]
        until(lambda: job(conn, sleeper)["status"] == "processing", 10, "the sleep job running")
        began = time.monotonic()
        cancelled = job_cron("jobs", "cancel", sleeper, url=pgbouncer.url, env=POOLED)
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancel requested" in cancelled.stdout, cancelled.stdout
        until(lambda: job(conn, sleeper)["status"] == "cancelled", 5, "the sleep job cancelled")
        took = time.monotonic() - began
        runner = next(d for d in pooled if d.events("job_cancelled"))
        assert runner.wait_event("job_cancelled")["job_id"] == sleeper
        print(f"cancel through pgbouncer: cancelled {took:.2f}s after `job_cron jobs cancel` started")
    finally:
        for d in pooled:
            d.stop_cleanly()

    # the same drain without the pooler: with the pooler's settings, then with the defaults
    # (prepared statements, generic plans, LISTEN)
    unprepared = start(daemons, dsn, pooled_config, "direct-pooled-settings", env=POOLED)
    try:
        direct_same = drain(conn, dsn, POOLED, "direct-pooled-settings", tmp_path)
    finally:
        for d in unprepared:
            d.stop_cleanly()
    direct_config = write_config(
        tmp_path / "direct.json", job_processing={"execution_mode": "inline"}, daemon=FAST
    )
    direct = start(daemons, dsn, direct_config, "direct")
    try:
        direct_defaults = drain(conn, dsn, None, "direct", tmp_path)
    finally:
        for d in direct:
            d.stop_cleanly()
    print(
        f"drain of {JOBS} noop jobs by {DAEMONS} inline daemons ({shares} each through the pooler): "
        f"through {pgbouncer.version}, transaction pooling, prepared_statements false, listen false: "
        f"{through_pooler}; direct, the same settings: {direct_same}; direct, the defaults: {direct_defaults}"
    )


def test_the_defaults_stop_at_start_with_the_fix_and_commands_work_with_it(
    pgbouncer: Bouncer, conn: psycopg.Connection[dict[str, Any]], tmp_path: Path, daemons: list[Daemon]
) -> None:
    # defaults: prepared statements on, so startup options are sent, and pgbouncer refuses them
    defaults = write_config(tmp_path / "defaults.json", job_processing={"execution_mode": "inline"})
    began = time.monotonic()
    refused = Daemon(pgbouncer.url, defaults, "--worker-id", "defaults")
    daemons.append(refused)
    try:
        code = refused.wait_exit(30)
    finally:
        refused.stop()
    took = time.monotonic() - began
    said = "".join(refused.raw)
    assert code == 2, said
    assert took < 30
    for words in (
        "SQLSTATE 08P01",
        "unsupported startup parameter: options",
        "database.prepared_statements: false",
        "JOB_CRON_DATABASE_PREPARED_STATEMENTS=false",
        "daemon.listen: false",
        "ignore_startup_parameters",
    ):
        assert words in said, said
    assert "Traceback" not in said
    health = job_cron("health", "--min-workers", "0", "--json", url=pgbouncer.url)
    assert health.returncode == 2, health.stderr
    checks = {c["name"]: c for c in json.loads(health.stdout)["checks"]}
    assert checks["database"]["status"] == "unhealthy"
    assert "database.prepared_statements: false" in checks["database"]["detail"]

    # with prepared_statements false the one-shot commands work through the pool
    health = job_cron("health", "--min-workers", "0", "--json", url=pgbouncer.url, env=POOLED)
    assert health.returncode == 0, health.stdout + health.stderr
    report = json.loads(health.stdout)
    assert report["status"] == "healthy"
    assert {c["name"]: c["status"] for c in report["checks"]}["schema"] == "healthy"
    status = job_cron("status", url=pgbouncer.url, env=POOLED)
    assert status.returncode == 0, status.stderr
    assert "pending 0" in status.stdout

    # prepared_statements false but LISTEN left on: a notification arrives on whichever server
    # connection ran the LISTEN, which the listener gave back to the pool at once: pgbouncer drops it
    # when no client holds that connection ("got packet 'A' from server when not linked"), or hands it
    # to the client that does. The listener never hears it, and a new job waits for the poll interval.
    listening = write_config(
        tmp_path / "listening.json",
        job_processing={"execution_mode": "inline"},
        daemon={"interval_seconds": 60},
    )
    d = Daemon(pgbouncer.url, listening, "--worker-id", "listening", env=POOLED)
    daemons.append(d)
    try:
        assert d.wait_event("worker_started", timeout=30)["listen"] is True
        time.sleep(2)  # its listener's LISTEN, and the look at the queue that follows it, are done
        enqueued = job_cron("enqueue", "--type", "noop", url=pgbouncer.url, env=POOLED)
        assert enqueued.returncode == 0, enqueued.stderr
        waiting = enqueued.stdout.split()[-1]
        time.sleep(3)
        assert job(conn, waiting)["status"] == "pending"  # directly connected, it runs within milliseconds
        health = job_cron("health", "--json", url=pgbouncer.url, env=POOLED)  # a live worker now
        checks = {c["name"]: c["status"] for c in json.loads(health.stdout)["checks"]}
        assert checks["workers"] == "healthy", health.stdout
    finally:
        d.stop_cleanly()
    dropped = pgbouncer.log.read_text().count("when not linked")
    print(f"{pgbouncer.version}: {dropped} notification(s) dropped ('got packet ... when not linked')")


def test_ignore_startup_parameters_on_an_older_pgbouncer_loses_prepared_statements(
    dsn: str, conn: psycopg.Connection[dict[str, Any]], tmp_path: Path
) -> None:
    """The other way past the refusal, without max_prepared_statements (PgBouncer before 1.21 has none):
    the daemon connects, and its prepared statements meet another client's on the server connection."""
    # one server connection for every client: what a busy pool does sometimes, it does each time
    with running_pgbouncer(
        dsn, tmp_path, "ignore_startup_parameters = options", "default_pool_size = 1"
    ) as bouncer:
        found = re.search(r"(\d+)\.(\d+)", bouncer.version)
        if found and (int(found[1]), int(found[2])) >= (1, 21):
            pytest.skip(f"{bouncer.version} can keep prepared statements apart (max_prepared_statements)")
        inline = write_config(tmp_path / "inline.json", job_processing={"execution_mode": "inline"})
        first = insert_job(conn)
        ran = job_cron("--config", str(inline), "run", "--once", url=bouncer.url)
        assert ran.returncode == 0, ran.stderr  # it looks as if the setting were enough
        assert job(conn, first)["status"] == "completed"
        second = insert_job(conn)
        again = job_cron("--config", str(inline), "run", "--once", url=bouncer.url)
        assert again.returncode == 1, again.stderr
        assert re.search(r'prepared statement "\w+" (already exists|does not exist)', again.stderr)
        assert "hint:" in again.stderr and "database.prepared_statements: false" in again.stderr
        assert "Traceback" not in again.stderr
        # what the hint says works, on the same server connection and its leftover statements
        fixed = job_cron("--config", str(inline), "run", "--once", url=bouncer.url, env=POOLED)
        assert fixed.returncode == 0, fixed.stderr
        assert job(conn, second)["status"] == "completed"
