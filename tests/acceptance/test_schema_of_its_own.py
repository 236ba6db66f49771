"""jobcron installed in a schema of its own, next to another application's tables of the same names.

The database also holds an unrelated `public.files` (the trap: a daemon that looked in public would
read another install's or another application's rows). migrate, run, the CLI and roles.sql all use
schema `jc`, chosen by `database.schema` or by the URL's search_path; an application whose session
does not name `jc` reaches the tables by qualified names, and its statements fire jobcron's triggers
without error.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from tests import workflows
from tests.acceptance.daemon import Daemon, write_config
from tests.ops_cli import run
from tests.roles import Roles

pytestmark = pytest.mark.acceptance
SCHEMA = {"JOB_CRON_DATABASE_SCHEMA": "jc"}


def run_json_in_jc(dsn: str, *args: str) -> Any:
    result = run(dsn, *args, "--json", env=SCHEMA)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def tables(dsn: str, schema: str) -> set[str]:
    with psycopg.connect(dsn) as c:
        return {r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))}


def test_migrate_run_cli_and_roles_in_a_dedicated_schema(empty_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as app:
        app.execute("CREATE TABLE public.files (id int PRIMARY KEY, note text)")  # the application's own
        app.execute("INSERT INTO public.files VALUES (1, 'mine')")
    done = run(empty_dsn, "migrate", env=SCHEMA)
    assert done.exit_code == 0, done.output
    assert {"processing_jobs", "files", "insights", "jobcron_migrations"} <= tables(empty_dsn, "jc")
    assert tables(empty_dsn, "public") == {"files"}
    # without the key the CLI looks in public, finds no ledger there, and says where it looked
    lost = run(empty_dsn, "status")
    assert lost.exit_code == 3 and "looked in schema 'public'" in lost.output, lost.output

    roles = Roles(empty_dsn)
    roles.apply("schema=jc")
    try:
        worker = roles.login("worker")
        job = run(empty_dsn, "enqueue", "--type", "with_insights", "--user", "ann", env=SCHEMA)
        assert job.exit_code == 0, job.output
        job_id = job.stdout.split()[-1]
        with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as app:  # search_path: public
            other = app.execute(
                "INSERT INTO jc.processing_jobs (job_type, user_id) VALUES ('noop', 'ann') RETURNING id::text"
            ).fetchone()
            gone = app.execute(
                "INSERT INTO jc.processing_jobs (job_type, user_id, scheduled_at) "
                "VALUES ('noop', 'bob', now() + interval '1 hour') RETURNING id::text"
            ).fetchone()
            assert other is not None and gone is not None
            # an application's own cancel from a session that does not name jc fires jobcron's
            # triggers (events, unparking): they find their objects in jc
            app.execute(
                "UPDATE jc.processing_jobs SET status = 'cancelled', completed_at = now() WHERE id = %s",
                (gone["id"],),
            )
        config = write_config(tmp_path / "c.json", workflows=workflows.ALL, database={"schema": "jc"})
        d = Daemon(worker, config, "--worker-id", "in-jc")
        try:
            d.wait_event("worker_started", timeout=30)
            d.wait_event("job_completed", timeout=30, job_id=job_id)
            d.wait_event("job_completed", timeout=30, job_id=other["id"])
            d.signal(signal.SIGTERM)
            assert d.wait_exit() == 0
        finally:
            d.stop()
        log = "".join(d.raw)
        assert '"level": "error"' not in log, log[-3000:]
    finally:
        roles.drop()
    status = run(empty_dsn, "status", env=SCHEMA)
    assert status.exit_code == 0, status.output
    listed = run_json_in_jc(empty_dsn, "jobs", "list")
    assert sorted(j["status"] for j in listed) == ["cancelled", "completed", "completed"], listed
    with psycopg.connect(empty_dsn, row_factory=dict_row) as c:
        rows = c.execute(
            "SELECT status, count(*) AS n FROM jc.processing_jobs GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert [(r["status"], r["n"]) for r in rows] == [("cancelled", 1), ("completed", 2)]
        assert c.execute("SELECT count(*) AS n FROM jc.insights").fetchone() == {"n": 2}
        assert c.execute("SELECT note FROM public.files").fetchall() == [{"note": "mine"}]  # untouched
    assert tables(empty_dsn, "public") == {"files"}


def test_the_url_search_path_works_as_the_key_does(empty_dsn: str, tmp_path: Path) -> None:
    params = conninfo_to_dict(empty_dsn)
    url = (
        f"postgresql://{params.get('user', '')}@{params.get('host')}:{params.get('port', 5432)}/{params['dbname']}"
        f"?options={quote('-csearch_path=jc')}"
    )
    missing = run(url, "migrate")  # the URL names a schema nobody created
    assert missing.exit_code != 0 and "no schema to install into" in missing.output, missing.output
    with psycopg.connect(empty_dsn, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA jc")
    assert run(url, "migrate").exit_code == 0
    assert "processing_jobs" in tables(empty_dsn, "jc") and tables(empty_dsn, "public") == set()
    job_id = run(url, "enqueue", "--type", "noop").stdout.split()[-1]
    config = write_config(tmp_path / "c.json", workflows=workflows.ALL)
    d = Daemon(url, config, "--worker-id", "url-path")
    try:
        d.wait_event("job_completed", timeout=30, job_id=job_id)
        d.signal(signal.SIGTERM)
        assert d.wait_exit() == 0
    finally:
        d.stop()


def test_without_startup_options_the_schema_must_come_from_the_role(empty_dsn: str) -> None:
    """Behind a transaction-mode pooler (prepared_statements false) nothing sets search_path at connect."""
    from jobcron import db
    from jobcron.config import load_config
    from jobcron.errors import ConfigError

    pooled = load_config(
        None, {}, {"database": {"url": empty_dsn, "schema": "jc", "prepared_statements": False}}
    )
    assert run(empty_dsn, "migrate", env=SCHEMA).exit_code == 0
    with pytest.raises(ConfigError, match="ALTER ROLE") as caught:
        db.connect(pooled)
    assert "'jc'" in str(caught.value) and "'public'" in str(caught.value)
    login = f"jc_pooled_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(empty_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
        admin.execute(sql.SQL("ALTER ROLE {} SET search_path = jc").format(sql.Identifier(login)))
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA jc TO {}").format(sql.Identifier(login)))
    try:
        as_role = load_config(
            None,
            {},
            {
                "database": {
                    "url": make_conninfo(empty_dsn, user=login),
                    "schema": "jc",
                    "prepared_statements": False,
                }
            },
        )
        with db.connect(as_role) as conn:
            assert db.current_schema(conn) == "jc"
    finally:
        with psycopg.connect(empty_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
