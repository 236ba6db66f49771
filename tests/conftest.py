"""Session-wide real PostgreSQL: find a server, migrate a template once, a fresh database per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from jobcron import migrate
from jobcron.config import Config, load_config
from jobcron.daemon.worker import Worker


def _admin(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A server where tests may create databases: env DSN, else testcontainers, else an embedded server."""
    env = os.environ.get("JOBCRON_TEST_DSN")
    if env:
        yield env
        return
    from tests.pgserver import find_test_dsn

    dsn, _source = find_test_dsn()
    yield dsn


@pytest.fixture(scope="session")
def template_db(pg_admin_dsn: str) -> Iterator[str]:
    """A database migrated once per session, copied for each test."""
    name = f"jobcron_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with _admin(pg_admin_dsn) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    tpl_dsn = make_conninfo(pg_admin_dsn, dbname=name)
    with psycopg.connect(tpl_dsn, autocommit=True, row_factory=dict_row) as conn:
        migrate.migrate(conn)
    yield name
    with _admin(pg_admin_dsn) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def dsn(pg_admin_dsn: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"jobcron_t_{uuid.uuid4().hex[:12]}"
    with _admin(pg_admin_dsn) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield make_conninfo(pg_admin_dsn, dbname=name)
    with _admin(pg_admin_dsn) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name = f"jobcron_e_{uuid.uuid4().hex[:12]}"
    with _admin(pg_admin_dsn) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(pg_admin_dsn, dbname=name)
    with _admin(pg_admin_dsn) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """An autocommit connection to the test's database."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def make_config(dsn: str) -> Any:
    """Build a Config for the test database with section overrides."""

    def build(**sections: dict[str, Any]) -> Config:
        # tests run workflows inline unless they are about process mode
        merged: dict[str, dict[str, Any]] = {
            "database": {"url": dsn},
            "job_processing": {"execution_mode": "inline"},
        }
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        return load_config(None, {}, merged)

    return build


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A folder for a private PostgreSQL server, outside pytest's tmp root.

    pytest makes its tmp root 0700 again whenever a session starts, which would lock the server's
    own OS user (jobcron-pg, when the tests run as root) out of a data folder under it.
    """
    folder = Path(tempfile.mkdtemp(prefix="jobcron-test-pg-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _workers_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every Worker a test builds has its connection closed at the end: a test that drives a worker
    step by step (claim, execute, record) never runs its shutdown, and an open connection left to the
    garbage collector is a ResourceWarning, which fails the suite."""
    made: list[Worker] = []
    build = Worker.__init__

    def init(self: Worker, *args: Any, **kwargs: Any) -> None:
        build(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Worker, "__init__", init)
    yield
    for worker in made:
        worker.close()
