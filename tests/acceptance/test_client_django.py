"""A Django 5 application on jobcron.contrib.django, logged in as the enqueuer role only.

The application (tests/clientapps/django_app.py) runs as its own process, as a web app would, next
to a real daemon logged in as the worker role: it enqueues through the ORM, learns of completion
with jobcron.wait on the connection Django holds, and reads result and insights through the ORM.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.daemon import REPO, worker_daemon
from tests.roles import Roles

pytestmark = pytest.mark.acceptance
pytest.importorskip("django", reason="the test extra installs Django 5")


def django_app(conninfo: str, *args: str) -> dict[str, Any]:
    """Run the Django application once as this login; what it saw."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.clientapps.django_app", conninfo, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def test_a_django_app_as_the_enqueuer_enqueues_waits_and_reads_results(
    role_set: Roles, tmp_path: Path
) -> None:
    role_set.apply()
    worker, app = role_set.login("worker"), role_set.login("enqueuer")
    d = worker_daemon(worker, tmp_path, "django-app")
    try:
        seen = django_app(app)
    finally:
        d.stop_cleanly()
    created, finished = seen["created"], seen["finished"]
    # RETURNING brought the server's values back into the new objects
    assert created["status"] == "pending" and created["attempts"] == 0, created
    assert created["enqueued_by"] == f"{role_set.names['enqueuer']}_login"
    assert created["file_status"] == "uploaded"
    assert created["bare_metadata"] is None  # metadata=None is stored as SQL NULL, accepted
    assert (
        finished["wait_status"] == "completed" and finished["status"] == "completed" and finished["finished"]
    )
    assert finished["result"] == {"job": created["id"]}
    assert finished["insights"] == ["detail", "summary"], finished
    assert "written by the server" in seen["server_owned_refused"]
    assert seen["makemigrations"] == "No changes detected in app 'jobcron'"
    bulk = seen["bulk"]  # bulk_create sets the ids its INSERT returned (Django 5.2 alone drops them)
    assert len(set(bulk["file_ids"])) == 2 and bulk["job_file_ids"] == bulk["file_ids"], bulk
    assert bulk["statuses"] == ["pending", "pending"] and bulk["waited"] == ["completed", "completed"]


def test_the_models_refuse_writing_server_columns_and_unsaved_files_before_any_sql(
    role_set: Roles, tmp_path: Path
) -> None:
    role_set.apply()
    worker, app = role_set.login("worker"), role_set.login("enqueuer")
    d = worker_daemon(worker, tmp_path, "django-app")
    try:
        refused = django_app(app)["refused"]
    finally:
        d.stop_cleanly()
    # Django leaves generated fields out of an UPDATE without a word; the models say so instead
    for how, column in (("init", "status"), ("update", "status"), ("update_fields", "result")):
        assert refused[how].startswith(f"TypeError: Job.{column} is written by the server"), refused
    # without the models' fix Django 5.2 stores the job with file_id NULL and never saves the file
    assert refused["unsaved_file"].startswith("ValueError: save() prohibited"), refused
    assert refused["rows_added"] == "0"


def test_django_migrate_records_the_app_and_touches_no_jobcron_table(dsn: str) -> None:
    import psycopg

    def schema() -> list[tuple[object, ...]]:
        with psycopg.connect(dsn) as conn:
            return conn.execute(
                "SELECT table_name, column_name, data_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name <> 'django_migrations' ORDER BY 1, 2"
            ).fetchall()

    before = schema()
    found = django_app(dsn, "--migrate")  # as the tables' owner, as an application's deploy would
    assert schema() == before
    written = [q for q in found["ran"] if not q.lstrip().upper().startswith("SELECT")]
    assert written and all("django_migrations" in q for q in written), written
    assert found["sqlmigrate"].count("(no-op)") == 3, found["sqlmigrate"]


def test_with_row_security_each_django_login_sees_only_its_own_jobs(role_set: Roles, tmp_path: Path) -> None:
    role_set.apply("row_security=on")
    worker = role_set.login("worker")
    apps = {who: role_set.login("enqueuer", who) for who in ("ann", "bob")}
    d = worker_daemon(worker, tmp_path, "django-app")
    try:
        seen = {"ann": django_app(apps["ann"])}
        seen["bob"] = django_app(apps["bob"], "--other", seen["ann"]["created"]["id"])
    finally:
        d.stop_cleanly()
    # bob may know ann's job id (LISTEN is not row-secured), and still sees nothing of it
    assert seen["bob"]["other"] == {"filter": False, "insights": 0, "get_job": "JobNotFound"}
    for who, saw in seen.items():
        other = next(v for k, v in seen.items() if k != who)
        mine = saw["finished"]["visible_jobs"]
        assert len(mine) == 2 and saw["created"]["id"] in mine, saw  # its job with a file, and the bare one
        assert other["created"]["id"] not in mine
        assert saw["finished"]["insights"] == ["detail", "summary"]
