"""Locks held by other applications: a real daemon and real commands against a table or row lock that
another session keeps, with systemd's notify socket, signals and killed clients."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from tests import workflows
from tests.acceptance.daemon import REPO, Daemon, NotifySocket, write_config
from tests.factories import insert_job, job
from tests.processes import reap

pytestmark = pytest.mark.acceptance

Conn = psycopg.Connection[dict[str, Any]]
WATCHDOG_SECONDS = 1.2
LOCK_TIMEOUT = 0.5


@contextlib.contextmanager
def table_lock(dsn: str) -> Iterator[None]:
    """Another application's `LOCK TABLE processing_jobs IN ACCESS EXCLUSIVE MODE`, held until the block ends."""
    with psycopg.connect(dsn, application_name="other-app") as other:
        other.execute("LOCK TABLE processing_jobs IN ACCESS EXCLUSIVE MODE")
        yield
        other.rollback()


@contextlib.contextmanager
def row_lock(dsn: str, job_id: str) -> Iterator[None]:
    """Another application's `SELECT ... FOR UPDATE` of one job row, held until the block ends."""
    with psycopg.connect(dsn, application_name="other-app") as other:
        other.execute("SELECT id FROM processing_jobs WHERE id = %s FOR UPDATE", (job_id,))
        yield
        other.rollback()


def watchdog_env(notify: NotifySocket) -> dict[str, str]:
    return {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(int(WATCHDOG_SECONDS * 1e6))}


def ping_gaps(notify: NotifySocket, start: float, end: float) -> list[float]:
    pings = [t for t in notify.times("WATCHDOG=1") if start <= t <= end]
    return [b - a for a, b in zip([start, *pings], [*pings, end], strict=True)]


def is_lock_wait(line: dict[str, Any]) -> bool:
    return line.get("event") == "db_unavailable" and line.get("reason") == "lock_timeout"


def lock_waits(d: Daemon) -> list[dict[str, Any]]:
    return [line for line in d.events("db_unavailable") if is_lock_wait(line)]


def test_a_table_lock_is_waited_out_aloud_while_the_watchdog_keeps_its_rhythm(
    dsn: str, conn: Conn, tmp_path: Path, notify: NotifySocket, daemons: list[Daemon]
) -> None:
    config = write_config(
        tmp_path / "c.json",
        database={"lock_timeout_seconds": LOCK_TIMEOUT},
        daemon={"interval_seconds": 0.2, "rescue_interval_seconds": 0.2, "heartbeat_interval_seconds": 0.2},
        job_processing={"execution_mode": "inline"},
    )
    d = Daemon(dsn, config, env=watchdog_env(notify))
    daemons.append(d)
    ready_at = notify.wait_for("READY=1")
    d.wait_event("worker_started")
    with table_lock(dsn):
        d.wait_for(is_lock_wait, timeout=5)
        time.sleep(4)
        assert d.proc.poll() is None
        waits = lock_waits(d)
    released_at = time.monotonic()
    # it carries on by itself: a job inserted now runs at once
    job_id = insert_job(conn, job_type="noop")
    d.wait_event("job_completed", job_id=job_id, timeout=10)
    assert job(conn, job_id)["status"] == "completed"
    assert d.wait_event("db_reconnected")["down_seconds"] >= 3

    # told at once, then 1, 2 ... s later, by each of its two connections: not one line per statement
    # that gave up (about 8 per second here)
    assert {w.get("where") for w in waits} == {None, "housekeeper"}
    assert len(waits) <= 8, [(w.get("where"), w["down_seconds"], w["attempts"]) for w in waits]
    assert max(w["attempts"] for w in waits) >= 4
    assert "pg_locks" in waits[0]["hint"]
    # the loop was waiting, not hung: systemd's watchdog heard from it all along
    gaps = ping_gaps(notify, ready_at, released_at)
    assert max(gaps) < WATCHDOG_SECONDS, f"gaps {gaps}"
    d.signal(signal.SIGTERM)
    assert d.wait_exit(20) == 0


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "recording a job"])
def test_sigterm_under_a_table_lock_stops_within_the_grace_plus_the_lock_timeout(
    dsn: str, conn: Conn, tmp_path: Path, notify: NotifySocket, daemons: list[Daemon], busy: bool
) -> None:
    grace = 1.0
    config = write_config(
        tmp_path / "c.json",
        workflows=workflows.ALL,
        database={"lock_timeout_seconds": LOCK_TIMEOUT},
        daemon={"interval_seconds": 0.2, "shutdown_grace_seconds": grace, "heartbeat_interval_seconds": 0.2},
        job_processing={"execution_mode": "process"},
    )
    d = Daemon(dsn, config, "--worker-id", "under-lock", env=watchdog_env(notify))
    daemons.append(d)
    d.wait_event("worker_started", timeout=30)
    job_id = None
    if busy:
        # the job ends while the lock is held: its record waits, and the stop must not wait with it
        job_id = insert_job(conn, job_type="slow", metadata={"seconds": 1})
        d.wait_event("job_claimed", job_id=job_id, timeout=20)
    with table_lock(dsn):
        d.wait_for(is_lock_wait, timeout=10)
        began = time.monotonic()
        d.signal(signal.SIGTERM)
        assert notify.wait_for("STOPPING=1", after=began, timeout=2) - began < 0.5
        assert d.wait_exit(20) == 0
        took = time.monotonic() - began
        # still locked: the daemon did not simply wait for the lock to go
        lock_held = conn.execute(
            "SELECT count(*) AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE c.relname = 'processing_jobs' AND l.mode = 'AccessExclusiveLock' AND l.granted"
        ).fetchone()
        assert lock_held == {"n": 1}
    stopped = d.wait_event("worker_stopped", timeout=1)
    assert stopped["exit_code"] == 0
    if busy:
        # after the grace, 5 s more for the server, then what could not be written is left to the rescue
        assert took < grace + 5 + LOCK_TIMEOUT + 2, took
        assert job_id is not None
        row = job(conn, job_id)
        assert row["status"] == "processing" and row["locked_by"] == "under-lock"
    else:
        assert took < LOCK_TIMEOUT + 2, took
        assert conn.execute("SELECT count(*) AS n FROM job_workers").fetchone() == {"n": 0}


def test_with_no_lock_timeout_the_stop_still_ends_at_its_deadline(
    dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    # lock_timeout 0 (or a pooler that drops the setting): nothing ends the wait on the server's side
    grace = 0.5
    config = write_config(
        tmp_path / "c.json",
        database={"lock_timeout_seconds": 0},
        daemon={"interval_seconds": 0.2, "shutdown_grace_seconds": grace},
        job_processing={"execution_mode": "inline"},
    )
    d = Daemon(dsn, config)
    daemons.append(d)
    d.wait_event("worker_started")
    with table_lock(dsn):
        time.sleep(1)  # the loop's next statement is now queued behind the lock
        began = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait_exit(30) == 0
        took = time.monotonic() - began
    assert grace + 4 < took < grace + 5 + 3, took
    assert d.events("db_statement_interrupted")


def test_a_row_lock_on_the_running_job_does_not_silence_the_watchdog(
    dsn: str, conn: Conn, tmp_path: Path, notify: NotifySocket, daemons: list[Daemon]
) -> None:
    config = write_config(
        tmp_path / "c.json",
        daemon={"interval_seconds": 0.2, "heartbeat_interval_seconds": 0.2},
        job_processing={"execution_mode": "process"},
    )
    d = Daemon(dsn, config, env=watchdog_env(notify))
    daemons.append(d)
    d.wait_event("worker_started", timeout=30)
    job_id = insert_job(conn, job_type="sleep", metadata={"seconds": 5})
    started = notify.wait_for(f"STATUS=running job {job_id} (sleep)")
    with row_lock(dsn, job_id):
        # the job's heartbeat now waits for this lock, on the housekeeper's thread
        time.sleep(WATCHDOG_SECONDS * 2.5)
        held_until = time.monotonic()
    d.wait_event("job_completed", job_id=job_id, timeout=20)
    assert job(conn, job_id)["status"] == "completed"
    gaps = ping_gaps(notify, started, held_until)
    assert max(gaps) < WATCHDOG_SECONDS, f"gaps {gaps}"


def run_cli(dsn: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": dsn,
        "JOB_CRON_DATABASE_LOCK_TIMEOUT_SECONDS": str(LOCK_TIMEOUT),
    }
    return subprocess.run(
        [sys.executable, "-m", "jobcron", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_commands_behind_a_table_lock_give_up_with_a_clear_message(dsn: str) -> None:
    with table_lock(dsn):
        for args in (["status"], ["jobs", "list"], ["enqueue", "--type", "noop"], ["workers"]):
            began = time.monotonic()
            done = run_cli(dsn, *args)
            took = time.monotonic() - began
            assert done.returncode == 1, (args, done.stdout, done.stderr)
            assert f"database did not answer within {LOCK_TIMEOUT:g}s" in done.stderr, done.stderr
            assert "database.lock_timeout_seconds" in done.stderr and "Traceback" not in done.stderr
            assert took < 10, (args, took)
        began = time.monotonic()
        health = run_cli(dsn, "health")
        assert time.monotonic() - began < 10
        assert health.returncode == 2, health.stdout + health.stderr
        assert health.stdout.startswith("unhealthy")
        assert f"database did not answer within {LOCK_TIMEOUT:g}s" in health.stdout
    with psycopg.connect(dsn, row_factory=dict_row) as check:
        assert check.execute("SELECT count(*) AS n FROM processing_jobs").fetchone() == {"n": 0}


def test_a_killed_command_leaves_no_backend_queued_behind_the_lock(dsn: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": dsn,
        "JOB_CRON_DATABASE_LOCK_TIMEOUT_SECONDS": "2",
    }
    with table_lock(dsn), psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as watch:

        def queued() -> int:
            row = watch.execute(
                "SELECT count(*) AS n FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name LIKE 'job_cron:%%'"
                " AND wait_event_type = 'Lock'"
            ).fetchone()
            assert row is not None
            return int(row["n"])

        client = subprocess.Popen(
            [sys.executable, "-m", "jobcron", "jobs", "list"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 15
            while queued() == 0:
                assert time.monotonic() < deadline, "the command's statement never queued"
                time.sleep(0.05)
            client.send_signal(signal.SIGKILL)
            client.wait(5)
            killed_at = time.monotonic()
            while queued() > 0:
                # the lock timeout ends the wait even though nobody reads the answer any more
                assert time.monotonic() - killed_at < 2 + 2, "a killed command's backend stays queued"
                time.sleep(0.05)
        finally:
            reap(client, 5)


class SilentAfterLogin:
    """A TCP proxy to the real server that lets a client log in, then never passes on a byte it sends:
    a server that accepted the connection and then stopped answering (a partition, a frozen host)."""

    def __init__(self, dsn: str) -> None:
        params = conninfo_to_dict(dsn)
        self.target = (str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.dsn = make_conninfo(
            dsn, host="127.0.0.1", port=self.listener.getsockname()[1], sslmode="disable"
        )
        self._sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            logged_in = threading.Event()
            threading.Thread(target=self._to_client, args=(server, client, logged_in), daemon=True).start()
            threading.Thread(target=self._to_server, args=(client, server, logged_in), daemon=True).start()

    @staticmethod
    def _to_client(server: socket.socket, client: socket.socket, logged_in: threading.Event) -> None:
        buffered = b""
        with contextlib.suppress(OSError):
            while chunk := server.recv(65536):
                buffered += chunk
                # messages: type byte, 4-byte length; ReadyForQuery ('Z') ends the login
                while len(buffered) >= 5:
                    size = 1 + int.from_bytes(buffered[1:5], "big")
                    if len(buffered) < size:
                        break
                    if buffered[:1] == b"Z":
                        logged_in.set()
                    buffered = buffered[size:]
                client.sendall(chunk)

    @staticmethod
    def _to_server(client: socket.socket, server: socket.socket, logged_in: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while chunk := client.recv(65536):
                if not logged_in.is_set():
                    server.sendall(chunk)

    def close(self) -> None:
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()


def test_health_answers_unhealthy_in_time_when_the_server_stops_answering(dsn: str) -> None:
    proxy = SilentAfterLogin(dsn)
    try:
        began = time.monotonic()
        done = run_cli(proxy.dsn, "health", "--timeout", "2", "--json", timeout=30)
        took = time.monotonic() - began
    finally:
        proxy.close()
    assert done.returncode == 2, done.stdout + done.stderr
    assert '"database did not answer within 2s"' in done.stdout
    assert took < 2 + 5, took  # the budget, plus a Python start-up
