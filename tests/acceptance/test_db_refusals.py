"""A connection the server refuses for good stops the daemon at start (exit 2, cause and hint); an
unreachable server is waited for, with warnings, and `run --once` gives up after a bounded time."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.acceptance.daemon import REPO, Daemon, job_cron, write_config
from tests.refusing_server import RefusingServer

pytestmark = pytest.mark.acceptance
WRONG = "Wr0ng-pa55word-never-shown"
RIGHT = "R1ght-pa55word-never-shown"


def url_of(
    dsn: str, *, user: str | None = None, password: str | None = None, dbname: str | None = None
) -> str:
    p = conninfo_to_dict(dsn)
    who = user or p.get("user", "postgres")
    if password:
        who += f":{password}"
    return f"postgresql://{who}@{p.get('host', '127.0.0.1')}:{p.get('port', '5432')}/{dbname or p['dbname']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_refused(result: subprocess.CompletedProcess[str], sqlstate: str, *hints: str) -> None:
    assert result.returncode == 2, result.stderr
    assert f"SQLSTATE {sqlstate}" in result.stderr and "hint:" in result.stderr
    for hint in hints:
        assert hint in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("fault", "sqlstate", "hint"),
    [("dbname", "3D000", "database name"), ("user", "28000", "pg_hba.conf")],
)
@pytest.mark.parametrize("mode", [["run"], ["run", "--once"], ["status"]])
def test_an_unknown_database_or_role_exits_2_at_once(
    dsn: str, fault: str, sqlstate: str, hint: str, mode: list[str]
) -> None:
    url = (
        url_of(dsn, dbname="jobcron_no_such_db")
        if fault == "dbname"
        else url_of(dsn, user="jobcron_no_such_role")
    )
    began = time.monotonic()
    result = job_cron(*mode, url=url)
    assert_refused(result, sqlstate, hint)
    assert time.monotonic() - began < 15  # at once, not after a wait


@pytest.fixture
def password_server(server_dir: Path) -> Iterator[Any]:
    """A private server where role jobcron_pw must give its password (the shared one trusts 127.0.0.1)."""
    from jobcron.dev.embedded import EmbeddedServer

    server = EmbeddedServer(data_dir=server_dir / "data", fast=True)
    server.start()
    try:
        with psycopg.connect(server.admin_dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE jobcron_pw LOGIN PASSWORD '{RIGHT}'")
        hba = server.pgdata / "pg_hba.conf"
        hba.write_text("host all jobcron_pw 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        with psycopg.connect(server.admin_dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
        wrong = url_of(server.dsn, user="jobcron_pw", password=WRONG)
        deadline = time.monotonic() + 10
        while True:  # the reload is asynchronous: wait until the server asks for the password
            try:
                psycopg.connect(wrong, connect_timeout=2).close()
            except psycopg.OperationalError:
                break
            assert time.monotonic() < deadline, "pg_hba.conf reload not in effect"
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


def test_a_wrong_password_exits_2_and_never_shows_it(password_server: Any) -> None:
    wrong = url_of(password_server.dsn, user="jobcron_pw", password=WRONG)
    for mode in (["run"], ["run", "--once"], ["migrate"]):
        result = job_cron(*mode, url=wrong)
        assert_refused(result, "28P01", "password")
        assert WRONG not in result.stdout + result.stderr
    # the same role with its password gets in: what was refused was the password, nothing else
    right = job_cron("migrate", "--check", url=url_of(password_server.dsn, user="jobcron_pw", password=RIGHT))
    assert right.returncode == 3, right.stderr  # connected; the schema is simply not there yet
    assert RIGHT not in right.stdout + right.stderr


def test_a_startup_parameter_refused_by_a_pooler_exits_2_with_the_settings_to_change() -> None:
    """The bytes PgBouncer sends (FATAL, 08P01) when a client sends `options`; pgbouncer itself below."""
    with RefusingServer("08P01", "unsupported startup parameter: options") as pooler:
        result = job_cron("run", url=pooler.url())
    assert_refused(
        result, "08P01", "database.prepared_statements: false", "--no-listen", "ignore_startup_parameters"
    )


def test_pgbouncer_with_its_defaults_refuses_the_daemon_and_the_hint_works(
    conn: psycopg.Connection[dict[str, Any]], dsn: str, server_dir: Path
) -> None:
    pgbouncer = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
    )
    if pgbouncer is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    target = conninfo_to_dict(dsn)
    port = free_port()
    (server_dir / "userlist.txt").write_text('"postgres" ""\n')
    ini = server_dir / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"app = host={target.get('host', '127.0.0.1')} port={target.get('port', '5432')} dbname={target['dbname']}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {server_dir / 'userlist.txt'}\n"
        "pool_mode = transaction\nlogfile =\npidfile =\n"
    )
    for path in (ini, server_dir / "userlist.txt"):
        path.chmod(0o644)
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []  # pgbouncer refuses to run as root
    with (server_dir / "pgbouncer.log").open("w") as log:
        proc = subprocess.Popen([pgbouncer, *as_user, str(ini)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, (server_dir / "pgbouncer.log").read_text()
                assert time.monotonic() < deadline, "pgbouncer did not start listening"
                time.sleep(0.1)
        url = f"postgresql://postgres@127.0.0.1:{port}/app"
        refused = job_cron("run", url=url)
        assert_refused(
            refused, "08P01", "unsupported startup parameter", "database.prepared_statements: false"
        )
        # what the hint says to do works: the daemon runs a job through the transaction-mode pool
        conn.execute("INSERT INTO processing_jobs (job_type) VALUES ('noop')")
        ran = job_cron(
            "run", "--once", "--no-listen", url=url, env={"JOB_CRON_DATABASE_PREPARED_STATEMENTS": "false"}
        )
        assert ran.returncode == 0, ran.stderr
        row = conn.execute("SELECT status FROM processing_jobs").fetchone()
        assert row is not None and row["status"] == "completed"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    "where",
    ["closed_port", "unresolvable_host", "server_starting_up"],
)
def test_an_unreachable_server_is_retried_with_warnings_and_once_gives_up(tmp_path: Path, where: str) -> None:
    starting = RefusingServer("57P03", "the database system is starting up")
    url = {
        "closed_port": f"postgresql://app@127.0.0.1:{free_port()}/app",
        "unresolvable_host": "postgresql://app@jobcron-no-such-host.invalid/app",
        "server_starting_up": starting.url(),
    }[where]
    config = write_config(tmp_path / "c.json", daemon={"once_db_wait_seconds": 3})
    with starting:
        began = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "jobcron",
                "--config",
                str(config),
                "--log-format",
                "json",
                "run",
                "--once",
            ],
            env={**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": url},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - began
    assert result.returncode == 1, result.stderr
    assert "gave up after 3s" in result.stderr and "daemon.once_db_wait_seconds" in result.stderr
    assert "SQLSTATE" not in result.stderr and "Traceback" not in result.stderr
    assert 3 <= took < 20
    warnings = [line for line in result.stderr.splitlines() if '"db_unavailable"' in line]
    assert len(warnings) >= 2, result.stderr  # the first at once, then again while it lasts


def test_a_daemon_waiting_for_its_server_keeps_warning(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json")
    d = Daemon(f"postgresql://app@127.0.0.1:{free_port()}/app", config)
    try:
        first = d.wait_event("db_unavailable", timeout=20)
        assert first["attempts"] == 1
        d.wait_for(
            lambda line: line.get("event") == "db_unavailable" and line.get("attempts", 0) > 1, timeout=20
        )
        assert d.proc.poll() is None  # still waiting: a refused connection may be a server about to start
        d.signal(signal.SIGTERM)
        assert d.wait_exit(15) == 0
    finally:
        d.stop()
