"""A SQLAlchemy 2 application on jobcron.contrib.sqlalchemy, logged in as the enqueuer role only.

The application (tests/clientapps/sqlalchemy_app.py) runs next to a real daemon logged in as the
worker role: it enqueues through the ORM, learns of completion with jobcron.wait on the session's
psycopg connection, and reads result and insights through the ORM.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.daemon import worker_daemon
from tests.roles import Roles

pytestmark = pytest.mark.acceptance
pytest.importorskip("sqlalchemy", reason="the test extra installs SQLAlchemy 2")

from tests.clientapps import sqlalchemy_app  # noqa: E402  (after the skip: it imports sqlalchemy)


def test_a_sqlalchemy_app_as_the_enqueuer_enqueues_waits_and_reads_results(
    role_set: Roles, tmp_path: Path
) -> None:
    role_set.apply()
    worker, app = role_set.login("worker"), role_set.login("enqueuer")
    d = worker_daemon(worker, tmp_path, "sqlalchemy-app")
    try:
        seen = sqlalchemy_app.run(app)
    finally:
        d.stop_cleanly()
    created, finished = seen["created"], seen["finished"]
    assert created["status"] == "pending" and created["attempts"] == 0, created  # from RETURNING
    assert created["enqueued_by"] == f"{role_set.names['enqueuer']}_login"
    assert created["file_status"] == "uploaded"
    assert created["bare_metadata"] == {}  # None or unset: the server default, never JSON null
    assert (
        finished["wait_status"] == "completed" and finished["status"] == "completed" and finished["finished"]
    )
    assert finished["result"] == {"job": created["id"]}
    assert finished["insights"] == ["detail", "summary"], finished
    assert "written by the server" in seen["server_owned_refused"]


def test_with_row_security_each_sqlalchemy_login_sees_only_its_own_jobs(
    role_set: Roles, tmp_path: Path
) -> None:
    role_set.apply("row_security=on")
    worker = role_set.login("worker")
    apps = {who: role_set.login("enqueuer", who) for who in ("ann", "bob")}
    d = worker_daemon(worker, tmp_path, "sqlalchemy-app")
    try:
        seen = {who: sqlalchemy_app.run(app) for who, app in apps.items()}
    finally:
        d.stop_cleanly()
    for who, saw in seen.items():
        other = next(v for k, v in seen.items() if k != who)
        mine = saw["finished"]["visible_jobs"]
        assert len(mine) == 2 and saw["created"]["id"] in mine, saw
        assert other["created"]["id"] not in mine
        assert saw["finished"]["insights"] == ["detail", "summary"]
