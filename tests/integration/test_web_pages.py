"""The dashboard pages against a real database: login, session cookie, CSRF, escaping, actions by role."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

pytest.importorskip("fastapi", reason="the test extra installs the web stack")

from fastapi.testclient import TestClient

from jobcron.admin import tokens as admin_tokens
from tests.factories import insert_job
from tests.webclient import csrf, log_in, site

__all__ = ["site"]  # the fixture

Conn = psycopg.Connection[dict[str, Any]]


def test_pages_need_a_session_and_the_login_sets_one(site: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = site
    assert client.get("/").status_code == 303 and client.get("/").headers["location"] == "/login"
    form = client.get("/login")
    assert form.status_code == 200 and 'type="password"' in form.text
    assert "default-src 'none'" in form.headers["content-security-policy"]
    wrong = client.post("/login", data={"token": "jc_wrong", "csrf": "login"})
    assert wrong.status_code == 401 and "unknown or revoked token" in wrong.text
    assert client.post("/login", data={"token": tokens["admin"]}).status_code == 403  # not from the form
    log_in(client, tokens["admin"])
    page = client.get("/")
    assert page.status_code == 200 and "Overview" in page.text and 'id="count-pending"' in page.text
    assert tokens["admin"] not in page.text


def test_values_from_the_database_are_escaped(site: tuple[TestClient, dict[str, str]], conn: Conn) -> None:
    client, tokens = site
    job_id = insert_job(
        conn,
        job_type="noop",
        user_id="<script>alert(1)</script>",
        metadata={"x": "<img src=x onerror=alert(2)>"},
    )
    conn.commit()
    log_in(client, tokens["viewer"])
    for path in ("/jobs", f"/jobs/{job_id}"):
        page = client.get(path).text
        assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page, (
            path
        )
        assert "<img src=x" not in page
    assert 'src="/static/jobcron.js"' in client.get("/jobs").text
    script = client.get("/static/jobcron.js")  # served by the package: no CDN
    assert script.status_code == 200 and "EventSource" in script.text


def test_an_admin_cancels_from_the_job_page_with_the_form_s_csrf_value(
    site: tuple[TestClient, dict[str, str]], conn: Conn
) -> None:
    client, tokens = site
    job_id = insert_job(conn, job_type="noop")
    conn.commit()
    log_in(client, tokens["admin"])
    page = client.get(f"/jobs/{job_id}").text
    assert 'id="cancel"' in page
    assert client.post(f"/jobs/{job_id}/cancel", data={"csrf": "0" * 64}).status_code == 403
    done = client.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf(page)})
    assert done.status_code == 303
    status = conn.execute("SELECT status FROM processing_jobs WHERE id = %s", (job_id,)).fetchone()
    assert status == {"status": "cancelled"}
    assert 'id="retry"' in client.get(f"/jobs/{job_id}").text


def test_a_viewer_sees_no_actions_and_may_not_post_one(
    site: tuple[TestClient, dict[str, str]], conn: Conn
) -> None:
    client, tokens = site
    job_id = insert_job(conn, job_type="noop")
    conn.commit()
    log_in(client, tokens["viewer"])
    page = client.get(f"/jobs/{job_id}").text
    assert 'id="cancel"' not in page
    assert client.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf(page)}).status_code == 403
    # a cookie is not enough to act through the API either
    assert client.post("/api/jobs", json={"job_type": "noop"}).status_code == 401


def test_a_revoked_token_ends_the_session(site: tuple[TestClient, dict[str, str]], conn: Conn) -> None:
    client, tokens = site
    log_in(client, tokens["viewer"])
    assert client.get("/").status_code == 200
    admin_tokens.revoke(conn, "watch")
    conn.commit()
    assert client.get("/").status_code == 303


def test_the_browser_holds_a_session_secret_not_the_token_and_logout_ends_it(
    site: tuple[TestClient, dict[str, str]], conn: Conn
) -> None:
    client, tokens = site
    log_in(client, tokens["admin"])
    secret = client.cookies["jobcron_session"]
    assert secret.startswith("js_") and tokens["admin"] not in secret
    stored = conn.execute(
        "SELECT session_sha256, expires_at - now() AS left FROM jobcron_sessions"
    ).fetchall()
    assert len(stored) == 1 and stored[0]["session_sha256"] == admin_tokens.digest(secret)
    assert 11.9 * 3600 < stored[0]["left"].total_seconds() <= 12 * 3600
    page = client.get("/").text
    assert client.post("/logout", data={"csrf": csrf(page)}).status_code == 303
    assert conn.execute("SELECT count(*) AS n FROM jobcron_sessions").fetchone() == {"n": 0}
    client.cookies.set("jobcron_session", secret)  # the old cookie, kept by someone
    assert client.get("/").status_code == 303
    assert client.get("/api/status").status_code == 401
    # the token itself is no session: a cookie holding it opens nothing
    client.cookies.set("jobcron_session", tokens["admin"])
    assert client.get("/").status_code == 303


def test_an_expired_session_sends_back_to_the_login(
    site: tuple[TestClient, dict[str, str]], conn: Conn
) -> None:
    client, tokens = site
    log_in(client, tokens["viewer"])
    assert client.get("/").status_code == 200
    conn.execute("UPDATE jobcron_sessions SET expires_at = now() - interval '1 second'")
    conn.commit()
    assert client.get("/").status_code == 303
    log_in(client, tokens["viewer"])  # a new login sweeps the expired session away
    assert conn.execute("SELECT count(*) AS n FROM jobcron_sessions").fetchone() == {"n": 1}
