"""The Python snippets of docs/clients.md, run as written, each in a process of its own, against a real daemon.

A snippet gets the names the doc leaves to the reader: `url` (a libpq URL), `sqlalchemy_url` (the
same for SQLAlchemy's psycopg dialect) and `django_database` (Django's NAME/USER/HOST/PORT).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests import workflows
from tests.acceptance.daemon import REPO, Daemon, write_config

pytestmark = pytest.mark.acceptance
DOC = REPO / "docs" / "clients.md"
SNIPPETS = re.findall(
    r"<!-- snippet: ([\w-]+) \(run by tests/acceptance/test_client_docs.py\) -->\n```python\n(.*?)```",
    DOC.read_text(),
    re.S,
)


@pytest.fixture(scope="module")
def daemon_dsn(
    pg_admin_dsn: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One migrated database with a daemon running on it for every snippet of the module."""
    import uuid

    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"jobcron_docs_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    dsn = make_conninfo(pg_admin_dsn, dbname=name)
    config = write_config(tmp_path_factory.mktemp("docs") / "c.json", workflows=workflows.ALL)
    d = Daemon(dsn, config, "--worker-id", "docs")
    try:
        d.wait_event("worker_started", timeout=30)
        yield dsn
        d.signal(signal.SIGTERM)
        assert d.wait_exit() == 0
    finally:
        d.stop()
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_doc_has_the_snippets_this_test_expects() -> None:
    assert {name for name, _ in SNIPPETS} == {
        "psycopg-sync",
        "psycopg-async",
        "sqlalchemy",
        "sqlalchemy-dedup",
        "django",
    }


@pytest.mark.parametrize(("name", "code"), SNIPPETS, ids=[name for name, _ in SNIPPETS])
def test_a_python_snippet_runs_as_written(name: str, code: str, daemon_dsn: str, tmp_path: Path) -> None:
    p = conninfo_to_dict(daemon_dsn)
    user, host, port, db = p.get("user", ""), p.get("host", ""), p.get("port", "5432"), p["dbname"]
    prelude = textwrap.dedent(
        f"""
        url = {f"postgresql://{user}@{host}:{port}/{db}"!r}
        sqlalchemy_url = {f"postgresql+psycopg://{user}@{host}:{port}/{db}"!r}
        django_database = {{"NAME": {db!r}, "USER": {user!r}, "HOST": {host!r}, "PORT": {port!r}}}
        """
    )
    script = tmp_path / f"snippet_{name.replace('-', '_')}.py"  # not named like a module it imports
    script.write_text(prelude + code)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )
    assert done.returncode == 0, f"docs/clients.md snippet {name!r} failed:\n{done.stderr[-3000:]}"
