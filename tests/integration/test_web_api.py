"""The HTTP API of `job_cron web` against a real database: every endpoint, both roles, bad input.

The ASGI app runs in-process (Starlette's TestClient over httpx), with its real pool and LISTEN
connection; the daemon's side is played by plain UPDATEs where a test needs a job to move.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

pytest.importorskip("fastapi", reason="the test extra installs the web stack")

from fastapi.testclient import TestClient

from jobcron.admin import tokens as admin_tokens
from jobcron.web.app import create_app
from tests.factories import insert_job

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def web(conn: Conn, make_config: Callable[..., Any]) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The API, and a header for each role."""
    _, admin = admin_tokens.create(conn, "ops", "admin")
    _, viewer = admin_tokens.create(conn, "watch", "viewer")
    conn.commit()
    with TestClient(create_app(make_config()), raise_server_exceptions=True) as client:
        yield client, {"admin": f"Bearer {admin}", "viewer": f"Bearer {viewer}"}


def call(
    client: TestClient, role: str | None, tokens: dict[str, str], method: str, path: str, **kw: Any
) -> Any:
    headers = {"Authorization": tokens[role]} if role else {}
    return client.request(method, path, headers=headers, **kw)


READS = [("GET", "/api/status"), ("GET", "/api/jobs"), ("GET", "/api/workers"), ("GET", "/api/safety/health")]
ACTIONS = [
    ("POST", "/api/jobs", {"json": {"job_type": "noop"}}),
    ("POST", "/api/jobs/bulk", {"json": {"jobs": [{"job_type": "noop"}]}}),
    ("DELETE", "/api/jobs/completed?older_than=1d", {}),
    ("POST", "/api/safety/cleanup-stale", {}),
    ("POST", "/api/pause", {"json": {}}),
    ("POST", "/api/resume", {"json": {"all": True}}),
]


def test_without_credentials_401_with_a_bad_token_401(web: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = web
    for method, path in READS:
        assert call(client, None, tokens, method, path).status_code == 401
    bad = client.get("/api/status", headers={"Authorization": "Bearer jc_nottoken"})
    assert bad.status_code == 401 and bad.json() == {"error": "unknown or revoked token"}
    assert client.get("/api/status", headers={"Authorization": "Basic abc"}).status_code == 401


def test_a_viewer_reads_and_may_not_act(web: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = web
    for method, path in READS:
        assert call(client, "viewer", tokens, method, path).status_code in (200, 503), path
    for method, path, kw in ACTIONS:
        answer = call(client, "viewer", tokens, method, path, **kw)
        assert answer.status_code == 403 and "needs an admin token" in answer.json()["error"], path


def test_an_admin_acts(web: tuple[TestClient, dict[str, str]], conn: Conn) -> None:
    client, tokens = web
    for method, path, kw in ACTIONS:
        answer = call(client, "admin", tokens, method, path, **kw)
        assert answer.status_code in (200, 201), (path, answer.text)
    paused = conn.execute("SELECT count(*) AS n FROM job_pauses").fetchone()
    assert paused == {"n": 0}  # paused, then everything resumed
    by = conn.execute("SELECT count(*) AS n FROM processing_jobs WHERE job_type = 'noop'").fetchone()
    assert by == {"n": 2}


def test_status_has_seed_002s_shape(web: tuple[TestClient, dict[str, str]], conn: Conn) -> None:
    client, tokens = web
    insert_job(conn, job_type="noop")
    insert_job(conn, job_type="noop", status="failed", completed_at="now()")
    conn.commit()
    queue = call(client, "viewer", tokens, "GET", "/api/status").json()["queue"]
    assert set(queue) == {
        "pending_jobs",
        "waiting_jobs",  # jobcron's own: jobs waiting for their parents (depends_on)
        "running_jobs",
        "completed_jobs",
        "failed_jobs",
        "cancelled_jobs",
        "oldest_pending_job",
    }
    assert queue["pending_jobs"] == 1 and queue["failed_jobs"] == 1 and queue["oldest_pending_job"]["id"]


def test_enqueue_show_cancel_retry_through_the_api(web: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = web
    made = call(client, "admin", tokens, "POST", "/api/jobs", json={"job_type": "noop", "user_id": "u1"})
    assert made.status_code == 201 and made.json()["created"] is True
    job_id = made.json()["id"]
    shown = call(client, "viewer", tokens, "GET", f"/api/jobs/{job_id}").json()
    assert shown["status"] == "pending" and shown["user_id"] == "u1"
    listed = call(
        client, "viewer", tokens, "GET", "/api/jobs", params={"status": "pending", "user": "u1"}
    ).json()
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    cancelled = call(
        client, "admin", tokens, "POST", f"/api/jobs/{job_id}/cancel", json={"force": False}
    ).json()
    assert cancelled["status"] == "cancelled"
    again = call(client, "admin", tokens, "POST", f"/api/jobs/{job_id}/retry").json()
    assert (again["status"], again["was"]) == ("pending", "cancelled")


def test_bad_input_is_a_4xx_naming_the_field_never_a_500(web: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = web
    cases = [
        ("POST", "/api/jobs", {"json": {"job_type": "noop", "priority": 5000}}, 422, "priority"),
        ("POST", "/api/jobs", {"json": {"job_type": "x y"}}, 422, "job_type"),
        ("POST", "/api/jobs", {"json": {"job_type": "noop", "nope": 1}}, 422, "unknown field 'nope'"),
        (
            "POST",
            "/api/jobs/bulk",
            {"json": {"jobs": [{"job_type": "noop"}, {"job_type": ""}]}},
            422,
            "rows[1]",
        ),
        ("GET", "/api/jobs/not-a-uuid", {}, 422, "not a job id (a UUID)"),
        ("GET", "/api/jobs/00000000-0000-0000-0000-000000000000", {}, 404, "no job"),
        ("GET", "/api/jobs?status=bogus", {}, 422, "unknown status"),
        ("DELETE", "/api/jobs/completed?older_than=soon", {}, 422, "older_than"),
        ("POST", "/api/jobs/00000000-0000-0000-0000-000000000000/retry", {}, 404, "no job"),
    ]
    for method, path, kw, code, words in cases:
        answer = call(client, "admin", tokens, method, path, **kw)
        assert answer.status_code == code, (path, answer.status_code, answer.text)
        assert words in answer.text, (path, answer.text)


def test_a_hostile_row_comes_back_as_data(web: tuple[TestClient, dict[str, str]], conn: Conn) -> None:
    client, tokens = web
    job_id = insert_job(conn, job_type="noop", user_id="<script>alert(1)</script>")
    conn.commit()
    answer = call(client, "viewer", tokens, "GET", f"/api/jobs/{job_id}")
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["user_id"] == "<script>alert(1)</script>"


def test_a_revoked_token_is_refused(web: tuple[TestClient, dict[str, str]], conn: Conn) -> None:
    client, tokens = web
    admin_tokens.revoke(conn, "watch")
    conn.commit()
    assert call(client, "viewer", tokens, "GET", "/api/status").status_code == 401


def test_the_event_stream_delivers_a_job_change_from_one_listener(
    web: tuple[TestClient, dict[str, str]], dsn: str
) -> None:
    client, tokens = web
    job_id = call(client, "admin", tokens, "POST", "/api/jobs", json={"job_type": "noop"}).json()["id"]

    def finish() -> None:
        time.sleep(0.5)
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute(
                "UPDATE processing_jobs SET status = 'completed', completed_at = now(), attempts = 1 WHERE id = %s",
                (job_id,),
            )

    thread = threading.Thread(target=finish)
    thread.start()
    seen = ""
    try:
        with client.stream("GET", "/api/events", headers={"Authorization": tokens["viewer"]}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                seen += line + "\n"
                if job_id in line:
                    break
    finally:
        thread.join(10)
    assert "event: jobs" in seen and '"completed"' in seen


def test_the_openapi_page_lists_the_endpoints(web: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = web
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/status", "/api/jobs", "/api/jobs/{job_id}/cancel", "/api/events"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_schedules_crud_with_the_cli_s_rules(web: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = web
    made = call(
        client,
        "admin",
        tokens,
        "POST",
        "/api/schedules",
        json={"name": "nightly", "job_type": "noop", "kind": "daily", "at": "02:30", "metadata": {"k": 1}},
    )
    assert made.status_code == 201, made.text
    assert made.json()["next_run_at"] and "02:30" in made.json()["description"]
    key = str(made.json()["id"])
    assert call(client, "viewer", tokens, "POST", "/api/schedules", json={"name": "x"}).status_code == 403
    listed = call(client, "viewer", tokens, "GET", "/api/schedules").json()["schedules"]
    assert [s["name"] for s in listed] == ["nightly"]
    shown = call(client, "viewer", tokens, "GET", f"/api/schedules/{key}").json()
    assert shown["schedule"]["metadata"] == {"k": 1} and shown["executions"] == []
    changed = call(client, "admin", tokens, "PUT", "/api/schedules/nightly", json={"at": "03:00"}).json()
    assert "03:00" in changed["description"]
    paused = call(client, "admin", tokens, "PUT", f"/api/schedules/{key}", json={"enabled": False}).json()
    assert paused["enabled"] is False and paused["next_run_at"] is None
    assert call(client, "viewer", tokens, "GET", "/api/schedules/due").json() == {"schedules": []}
    bad = [
        ({"name": "b", "job_type": "noop", "kind": "daily", "at": "25:00"}, "at"),
        ({"name": "b", "job_type": "noop", "kind": "cron", "cron_expression": "99 * * * *"}, "cron"),
        ({"name": "b", "job_type": "noop", "kind": "interval", "every": "soon"}, "every"),
        ({"name": "b", "job_type": "noop", "kind": "interval", "every": "1h", "colour": "red"}, "colour"),
        ({"job_type": "noop", "kind": "interval", "every": "1h"}, "name"),
    ]
    for body, words in bad:
        answer = call(client, "admin", tokens, "POST", "/api/schedules", json=body)
        assert answer.status_code == 422 and words in answer.text, (body, answer.text)
    assert call(client, "admin", tokens, "DELETE", "/api/schedules/nightly").json()["removed"] is True
    assert call(client, "viewer", tokens, "GET", "/api/schedules/nightly").status_code == 404


def test_depends_on_through_the_api(web: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = web
    parent = call(client, "admin", tokens, "POST", "/api/jobs", json={"job_type": "noop"}).json()["id"]
    child = call(
        client, "admin", tokens, "POST", "/api/jobs", json={"job_type": "noop", "depends_on": [parent]}
    )
    assert child.status_code == 201
    shown = call(client, "viewer", tokens, "GET", f"/api/jobs/{child.json()['id']}").json()
    assert shown["status"] == "waiting" and [p["id"] for p in shown["parents"]] == [parent]
    ghost = "01900000-0000-7000-8000-000000000000"
    missing = call(
        client, "admin", tokens, "POST", "/api/jobs", json={"job_type": "noop", "depends_on": [ghost]}
    )
    assert missing.status_code == 422
    assert missing.json() == {"error": f"depends_on: job {ghost} does not exist"}
    bulk = call(
        client,
        "admin",
        tokens,
        "POST",
        "/api/jobs/bulk",
        json={"jobs": [{"job_type": "noop", "depends_on": ["x"]}]},
    )
    assert bulk.status_code == 422 and "rows[0]: depends_on[0]: not a job id" in bulk.json()["error"]
    status = call(client, "viewer", tokens, "GET", "/api/status").json()
    assert status["queue"]["waiting_jobs"] == 1
