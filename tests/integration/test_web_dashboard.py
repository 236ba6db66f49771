"""Every dashboard page against a real database: overview chart, jobs pages and forms, workers, safety, schedules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

pytest.importorskip("fastapi", reason="the test extra installs the web stack")

from fastapi.testclient import TestClient

from tests.factories import insert_job, status_counts
from tests.integration.test_ops_status import a_busy_queue, ago
from tests.webclient import csrf, log_in, site

__all__ = ["site"]  # the fixture

Conn = psycopg.Connection[dict[str, Any]]
Site = tuple[TestClient, dict[str, str]]


def test_the_overview_counts_and_charts_the_last_hour(site: Site, conn: Conn) -> None:
    client, tokens = site
    ids = a_busy_queue(conn)
    for minutes in (1, 1, 2):
        insert_job(conn, job_type="noop", status="failed", completed_at=ago(minutes=minutes))
    conn.commit()
    log_in(client, tokens["viewer"])
    page = client.get("/").text
    assert re.search(r'id="count-pending"><a [^>]*>4<', page) and re.search(
        r'id="count-running"><a [^>]*>1<', page
    )
    # 3 completed and 4 failed within the hour (the one 3 hours ago is outside it), per minute
    assert 'id="last-hour">3 completed, 4 failed' in page
    assert (
        page.count('class="failed"') == 3 and page.count('class="done"') == 1
    )  # minutes 1, 2, 10; minute 10
    assert f'href="/jobs/{ids["running"]}"' in page and "w-alive" in page and "paused: report" in page


def test_jobs_pages_are_keyset_pages_and_search_finds_an_id_or_a_user(site: Site, conn: Conn) -> None:
    client, tokens = site
    base = datetime.now(UTC) - timedelta(hours=1)
    made = [insert_job(conn, job_type="noop", user_id="pager", created_at=base) for _ in range(60)]
    insert_job(conn, job_type="noop", user_id="other")
    conn.commit()
    log_in(client, tokens["viewer"])
    first = client.get("/jobs", params={"user": "pager"}).text
    older = re.search(r'id="older" href="([^"]+)"', first)
    assert older, "a full page links to the next one"
    second = client.get(older.group(1).replace("&amp;", "&")).text
    shown = set(re.findall(r'<a href="/jobs/([0-9a-f-]{36})">', first + second))
    assert shown == set(made)  # 50 + 10, none twice, though all share one created_at
    assert 'id="older"' not in second and "newest" in second
    found = client.get("/jobs", params={"q": f"  {made[3]} "})
    assert found.status_code == 303 and found.headers["location"] == f"/jobs/{made[3]}"
    by_user = client.get("/jobs", params={"q": "other"}).text
    assert len(re.findall(r'<a href="/jobs/[0-9a-f-]{36}">', by_user)) == 1
    bad = client.get("/jobs", params={"after": "nonsense"})
    assert bad.status_code == 422 and "not a page cursor" in bad.text


def test_the_api_pages_with_next(site: Site, conn: Conn) -> None:
    client, tokens = site
    made = {insert_job(conn, job_type="noop") for _ in range(5)}
    conn.commit()
    auth = {"Authorization": f"Bearer {tokens['viewer']}"}
    page = client.get("/api/jobs", params={"limit": 3}, headers=auth).json()
    rest = client.get("/api/jobs", params={"limit": 3, "after": page["next"]}, headers=auth).json()
    assert {j["id"] for j in page["jobs"] + rest["jobs"]} == made and rest["next"] is None
    assert client.get("/api/jobs", params={"after": "x_y"}, headers=auth).status_code == 422


def test_an_admin_enqueues_one_many_and_clears_finished_jobs_from_the_jobs_page(
    site: Site, conn: Conn
) -> None:
    client, tokens = site
    log_in(client, tokens["admin"])
    token = csrf(client.get("/jobs").text)
    one = client.post(
        "/jobs/new",
        data={"csrf": token, "job_type": "noop", "user_id": "ann", "priority": "5", "metadata": '{"a": 1}'},
    )
    assert one.status_code == 303
    job_id = one.headers["location"].rsplit("/", 1)[1]
    row = conn.execute("SELECT user_id, priority FROM processing_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row == {"user_id": "ann", "priority": 5}
    refused = client.post("/jobs/new", data={"csrf": token, "job_type": "noop", "priority": "5000"})
    assert refused.status_code == 422 and "priority" in refused.text
    lines = '{"job_type": "noop", "user_id": "b1"}\n{"job_type": "noop", "user_id": "b2"}\n'
    many = client.post("/jobs/bulk", data={"csrf": token, "lines": lines, "format": "jsonl"})
    assert many.status_code == 200 and "2 job(s) enqueued from 2 line(s)" in many.text
    bad = client.post("/jobs/bulk", data={"csrf": token, "lines": lines + '{"user_id": "x"}\n'})
    assert bad.status_code == 422 and "line 3" in bad.text and "nothing was enqueued" in bad.text
    assert status_counts(conn) == {"pending": 3}
    insert_job(conn, job_type="noop", status="completed", completed_at=ago(days=9))
    insert_job(conn, job_type="noop", status="completed", completed_at=ago(days=1))
    conn.commit()
    purged = client.post("/jobs/purge", data={"csrf": token, "older_than": "7d"})
    assert purged.status_code == 200 and "1 finished job(s) older than 7d deleted" in purged.text
    assert client.post("/jobs/purge", data={"csrf": token, "older_than": "soon"}).status_code == 422
    assert client.post("/jobs/new", data={"csrf": "0" * 64, "job_type": "noop"}).status_code == 403


def test_the_job_page_shows_the_timeline_and_the_error_history_with_tracebacks(
    site: Site, conn: Conn
) -> None:
    client, tokens = site
    errors = [
        {
            "attempt": 1,
            "type": "ValueError",
            "message": "bad <b>row</b>",
            "traceback": "Traceback (most recent call last):\n  boom",
            "at": "2026-12-01T10:00:00+00:00",
        },
        "a string another application wrote",
    ]
    job_id = insert_job(conn, job_type="noop", status="failed", errors=errors, completed_at=ago(minutes=1))
    conn.commit()
    log_in(client, tokens["admin"])
    page = client.get(f"/jobs/{job_id}").text
    assert "attempt 1: ValueError" in page and "Traceback (most recent call last):" in page
    assert "bad &lt;b&gt;row&lt;/b&gt;" in page and 'id="retry"' in page
    missing = client.get("/jobs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "no job with id" in missing.text
    assert client.get("/jobs/not-a-uuid").status_code == 422


def test_workers_and_safety_pages_and_their_actions(site: Site, conn: Conn) -> None:
    client, tokens = site
    a_busy_queue(conn)
    stale = insert_job(conn, job_type="noop", status="processing", heartbeat_at=ago(minutes=10))
    conn.commit()
    log_in(client, tokens["viewer"])
    workers = client.get("/workers").text
    assert "w-alive" in workers and "w-dead" in workers and "(dead)" in workers
    safety = client.get("/safety").text
    assert 'class="health-degraded">degraded' in safety and "stale_jobs" in safety
    assert (
        f'href="/jobs/{stale}"' in safety and 'id="cleanup-stale"' not in safety
    )  # a viewer acts on nothing
    assert client.post("/safety/pause", data={"csrf": csrf(safety)}).status_code == 403
    client.cookies.clear()
    log_in(client, tokens["admin"])
    token = csrf(client.get("/safety").text)
    assert client.post("/safety/cleanup-stale", data={"csrf": token}).status_code == 303
    row = conn.execute("SELECT status FROM processing_jobs WHERE id = %s", (stale,)).fetchone()
    assert row is not None and row["status"] == "pending"
    assert client.post("/safety/pause", data={"csrf": token, "job_type": "mail"}).status_code == 303
    paused = {r["job_type"] for r in conn.execute("SELECT job_type FROM job_pauses").fetchall()}
    assert paused == {"report", "mail"}
    assert client.post("/safety/resume-all", data={"csrf": token}).status_code == 303
    assert conn.execute("SELECT count(*) AS n FROM job_pauses").fetchone() == {"n": 0}
    bad = client.post("/safety/pause", data={"csrf": token, "job_type": "x" * 101})
    assert bad.status_code == 422
    assert client.post("/safety/explode", data={"csrf": token}).status_code == 404


def test_a_schedule_is_previewed_created_edited_paused_resumed_and_deleted(site: Site, conn: Conn) -> None:
    client, tokens = site
    log_in(client, tokens["admin"])
    form = client.get("/schedules/new").text
    token = csrf(form)
    assert 'list="cron-presets"' in form
    fields = {
        "csrf": token,
        "name": "<b>nightly</b>",
        "job_type": "report",
        "kind": "daily",
        "at": "02:30",
        "timezone": "Europe/Paris",
    }
    preview = client.post("/schedules/new", data={**fields, "intent": "preview"})
    assert preview.status_code == 200 and preview.text.count("T02:30:00+01:00") == 5
    assert conn.execute("SELECT count(*) AS n FROM job_schedules").fetchone() == {"n": 0}  # nothing written
    wrong = client.post("/schedules/new", data={**fields, "at": "25:00", "intent": "save"})
    assert wrong.status_code == 422 and 'id="form-error"' in wrong.text and 'value="25:00"' in wrong.text
    made = client.post("/schedules/new", data={**fields, "intent": "save"})
    assert made.status_code == 303
    where = made.headers["location"]
    page = client.get(where).text
    assert "&lt;b&gt;nightly&lt;/b&gt;" in page and "<b>nightly</b>" not in page
    assert "02:30:00+01:00" in page
    edit = client.get(f"{where}/edit").text
    assert 'value="02:30:00"' in edit and 'value="Europe/Paris"' in edit
    changed = client.post(
        f"{where}/edit",
        data={
            "csrf": token,
            "job_type": "report",
            "kind": "cron",
            "cron_expression": "*/5 * * * *",
            "timezone": "UTC",
            "intent": "save",
        },
    )
    assert changed.status_code == 303
    row = conn.execute("SELECT kind, cron_expression, time_of_day FROM job_schedules").fetchone()
    assert row == {"kind": "cron", "cron_expression": "*/5 * * * *", "time_of_day": None}
    assert client.post(f"{where}/pause", data={"csrf": token}).status_code == 303
    assert 'id="resume"' in client.get(where).text
    assert client.post(f"{where}/resume", data={"csrf": token}).status_code == 303
    assert "*/5 * * * *" in client.get("/schedules").text
    assert client.post(f"{where}/delete", data={"csrf": token}).status_code == 303
    assert client.get(where).status_code == 404


def test_the_api_previews_a_schedule_with_the_cli_s_rules(site: Site) -> None:
    client, tokens = site
    auth = {"Authorization": f"Bearer {tokens['viewer']}"}
    body = {"job_type": "report", "kind": "interval", "every": "15m"}
    runs = client.post("/api/schedules/preview", params={"count": 3}, json=body, headers=auth).json()
    assert len(runs["next_runs"]) == 3 and runs["description"]
    bad = client.post("/api/schedules/preview", json={**body, "every": "soon"}, headers=auth)
    assert bad.status_code == 422 and "--every" in bad.json()["error"]


def test_a_running_job_s_progress_shows_on_its_page_and_the_overview(site: Site, conn: Conn) -> None:
    client, tokens = site
    progress = {
        "fraction": 0.42,
        "message": "<b>reading</b>",
        "attempt": 1,
        "at": "2026-12-03T10:00:00+00:00",
    }
    job_id = insert_job(conn, job_type="noop", status="processing", progress=progress)
    odd = insert_job(conn, job_type="noop", status="processing", progress=["not", "ours"])
    conn.commit()
    log_in(client, tokens["viewer"])
    page = client.get(f"/jobs/{job_id}").text
    assert '<progress max="1" value="0.42">' in page and "42% &lt;b&gt;reading&lt;/b&gt; (attempt 1)" in page
    assert "42% &lt;b&gt;reading&lt;/b&gt;" in client.get("/").text
    assert "unreadable progress value" in client.get(f"/jobs/{odd}").text


def test_a_job_page_links_its_parents_and_children_and_the_overview_counts_waiting(
    site: Site, conn: Conn
) -> None:
    client, tokens = site
    parent = insert_job(conn, job_type="<i>extract</i>")
    child = insert_job(conn, job_type="noop", depends_on=[parent])
    conn.commit()
    log_in(client, tokens["viewer"])
    page = client.get(f"/jobs/{child}").text
    assert "<h2>Parents (1)</h2>" in page and f'<a href="/jobs/{parent}">' in page
    assert "&lt;i&gt;extract&lt;/i&gt;" in page and "<i>extract</i>" not in page
    assert f'<a href="/jobs/{child}">' in client.get(f"/jobs/{parent}").text
    assert '<td id="count-waiting"><a href="/jobs?status=waiting">1</a></td>' in client.get("/").text
