"""Locks held by other applications: real commands against a table lock that another session keeps,
killed clients, and a server that stops answering."""

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
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from tests.acceptance.daemon import REPO

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
            if client.poll() is None:
                client.kill()
                client.wait(5)


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
