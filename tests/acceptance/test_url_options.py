"""A URL's own `options` (a search_path) reach every connection, the daemon's included."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from jobcron.config import load_config
from jobcron.db import connect
from tests.acceptance.daemon import REPO

pytestmark = pytest.mark.acceptance


def url_with_search_path(dsn: str, schema: str) -> str:
    params = conninfo_to_dict(dsn)
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    return f"postgresql://{params.get('user', 'postgres')}@{host}:{port}/{params['dbname']}?options=-csearch_path%3D{schema}"


def job_cron(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("JOB_CRON_", "POSTGRES_URL", "PGOPTIONS"))
    }
    return subprocess.run(
        [sys.executable, "-m", "jobcron", "--log-format", "json", *args],
        env={**env, "PYTHONPATH": str(REPO), "DATABASE_URL": url},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def app_url(empty_dsn: str) -> str:
    """A database whose jobcron tables live in schema `app` only, named by the URL's search_path."""
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app")
    url = url_with_search_path(empty_dsn, "app")
    migrated = job_cron("migrate", url=url)
    assert migrated.returncode == 0, migrated.stderr
    return url


def test_the_daemon_uses_the_schema_the_url_names(app_url: str, empty_dsn: str) -> None:
    enqueued = job_cron("enqueue", "--type", "noop", url=app_url)
    assert enqueued.returncode == 0, enqueued.stderr
    ran = job_cron("run", "--once", url=app_url)
    assert ran.returncode == 0, ran.stderr
    assert "schema out of date" not in ran.stderr
    with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT status FROM app.processing_jobs").fetchall()
        in_public = conn.execute("SELECT to_regclass('public.processing_jobs') AS t").fetchone()
    assert [r["status"] for r in rows] == ["completed"]
    assert in_public is not None and in_public["t"] is None


def test_the_worker_connection_keeps_the_url_options_and_its_own_settings(app_url: str) -> None:
    config = load_config(None, {}, {"database": {"url": app_url}})
    with connect(config, purpose="worker", generic_plans=True) as conn:
        row = conn.execute(
            "SELECT current_setting('search_path') AS path, current_setting('plan_cache_mode') AS plans"
        ).fetchone()
    assert row == {"path": "app", "plans": "force_generic_plan"}
    # the URL's options come last, so a setting written there wins over the daemon's default
    override = app_url.replace("%3Dapp", "%3Dapp%20-cplan_cache_mode%3Dauto")
    config = load_config(None, {}, {"database": {"url": override}})
    with connect(config, purpose="worker", generic_plans=True) as conn:
        row = conn.execute(
            "SELECT current_setting('search_path') AS path, current_setting('plan_cache_mode') AS plans"
        ).fetchone()
    assert row == {"path": "app", "plans": "auto"}
