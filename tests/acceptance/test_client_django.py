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

from tests import workflows
from tests.acceptance.daemon import REPO, Daemon, write_config
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
    d = Daemon(
        worker, write_config(tmp_path / "c.json", workflows=workflows.ALL), "--worker-id", "django-app"
    )
    d.wait_event("worker_started", timeout=30)
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


def test_with_row_security_each_django_login_sees_only_its_own_jobs(role_set: Roles, tmp_path: Path) -> None:
    role_set.apply("row_security=on")
    worker = role_set.login("worker")
    apps = {who: role_set.login("enqueuer", who) for who in ("ann", "bob")}
    d = Daemon(
        worker, write_config(tmp_path / "c.json", workflows=workflows.ALL), "--worker-id", "django-app"
    )
    d.wait_event("worker_started", timeout=30)
    try:
        seen = {who: django_app(app) for who, app in apps.items()}
    finally:
        d.stop_cleanly()
    for who, saw in seen.items():
        other = next(v for k, v in seen.items() if k != who)
        mine = saw["finished"]["visible_jobs"]
        assert len(mine) == 2 and saw["created"]["id"] in mine, saw  # its job with a file, and the bare one
        assert other["created"]["id"] not in mine
        assert saw["finished"]["insights"] == ["detail", "summary"]
