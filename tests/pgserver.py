"""Where tests find PostgreSQL: JOBCRON_TEST_DSN, else testcontainers, else a private embedded server."""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time
import warnings
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from jobcron.dev.embedded import EmbeddedServer
from jobcron.errors import DataDirInUse

REPO = Path(__file__).resolve().parents[1]
# kept between runs so that only the first run pays for initdb
STATE_DIR = Path(os.environ.get("JOBCRON_TEST_PG_DIR") or REPO / ".state" / "test-pg")
# one data folder per concurrent test session (each holds its folder's lock while it runs)
SLOTS = 8
IMAGE = os.environ.get("JOBCRON_TEST_PG_IMAGE", "postgres:16-alpine")

_found: tuple[str, str] | None = None


def find_test_dsn() -> tuple[str, str]:
    """A server where tests may CREATE DATABASE, and its source: 'env', 'testcontainers' or 'embedded'."""
    global _found
    if _found is None:
        began = time.monotonic()
        env = os.environ.get("JOBCRON_TEST_DSN")
        if env:
            _found = (env, "env")
        else:
            container = _from_testcontainers()
            _found = (container, "testcontainers") if container else (_from_embedded(), "embedded")
        _report(_found, time.monotonic() - began)
    return _found


def _report(found: tuple[str, str], seconds: float) -> None:
    # host and port only: a DSN from the environment may carry a password
    parts = conninfo_to_dict(found[0])
    where = f"{parts.get('host', 'local socket')}:{parts.get('port', 5432)}"
    print(f"pgserver: PostgreSQL from {found[1]} at {where}, ready in {seconds:.2f}s", file=sys.stderr)


def _docker_answers() -> bool:
    # when no engine answers, the docker client leaves its socket to the garbage collector: that
    # ResourceWarning is the client's, and it must not fail whichever test the collector runs in
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        answered = _ping_docker()
        gc.collect()
    return answered


def _ping_docker() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        # no engine, no socket, no permission: the constructor or the ping fails within the timeout
        return False


def _from_testcontainers() -> str | None:
    if not _docker_answers():
        return None
    try:
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers before the community namespace
            from testcontainers.postgres import PostgresContainer

        container = PostgresContainer(IMAGE, driver=None)
        container.start()
    except Exception as exc:
        print(f"pgserver: testcontainers failed ({exc}); using an embedded server", file=sys.stderr)
        return None
    atexit.register(container.stop)
    return str(container.get_connection_url())


def _from_embedded() -> str:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    for slot in range(SLOTS):
        server = EmbeddedServer(STATE_DIR / f"slot{slot}", fast=True)
        try:
            server.start()
        except DataDirInUse:
            continue
        atexit.register(server.stop)
        _drop_leftovers(server)
        return server.admin_dsn()
    raise RuntimeError(f"all {SLOTS} embedded test servers in {STATE_DIR} are in use")


def _drop_leftovers(server: EmbeddedServer) -> None:
    """Drop databases a killed earlier session left behind; this slot is ours alone now."""
    with psycopg.connect(server.admin_dsn(), autocommit=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT datname FROM pg_database"
                " WHERE NOT datistemplate AND datname NOT IN ('postgres', 'jobcron')"
            )
        ]
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
