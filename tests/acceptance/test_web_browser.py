"""The dashboard in a real browser: log in, watch a job start live, cancel it, and hostile data stays text.

A real daemon and a real `job_cron web` process; headless Chromium (Debian's package) driven by
Playwright. The page must change without a reload: a marker set on `window` before the change is
still there after it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

import jobcron
from tests.acceptance.daemon import Daemon, worker_daemon
from tests.acceptance.web import WebServer
from tests.ops_cli import run

pytestmark = pytest.mark.acceptance
pytest.importorskip("fastapi", reason="the test extra installs the web stack")
sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
# every wait and expect: generous for a loaded 2-core machine (the page polls every 3 s, a claim
# and a cancel can take a few more)
WAIT_MS = 20_000
HOSTILE = "<script>window.__pwned=1</script>"


def _console(message: Any, problems: list[str]) -> None:
    # the dashboard serves no icon and the browser asks for one on its own: that 404 is no page's fault
    url = message.location.get("url", "")
    if message.type == "error" and not url.endswith("/favicon.ico"):
        problems.append(f"console: {message.text} ({url})")


@dataclass
class Dashboard:
    """What the test drives and watches."""

    daemon: Daemon
    web: WebServer
    page: Any
    # what the page reported going wrong: script errors, console errors, failed requests
    problems: list[str] = field(default_factory=list)


@pytest.fixture
def dashboard(dsn: str, tmp_path: Path) -> Iterator[Dashboard]:
    """A daemon with the test workflows, a job_cron web and a Chromium page, started side by side
    (on a loaded machine each takes a few seconds on its own)."""
    if CHROMIUM is None:
        pytest.skip(
            "no chromium (Debian's package: apt-get install chromium; scripts/test.sh does it as root)"
        )
    with contextlib.ExitStack() as stack:
        daemon = worker_daemon(dsn, tmp_path, "browser-w1", ready=False)
        stack.callback(daemon.stop)
        web = WebServer(dsn, tmp_path / "web.log", ready=False)
        stack.callback(web.stop)
        browser = stack.enter_context(sync_api.sync_playwright()).chromium.launch(executable_path=CHROMIUM)
        stack.callback(browser.close)
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        sync_api.expect.set_options(timeout=WAIT_MS)
        seen = Dashboard(daemon, web, page)
        page.on("pageerror", lambda exc: seen.problems.append(f"script error: {exc}"))
        page.on("console", lambda message: _console(message, seen.problems))
        page.on(
            "response", lambda r: seen.problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
        )
        web.wait_answering()
        daemon.wait_event("worker_started", timeout=30)
        yield seen


def log_in(page: Any, base: str, token: str) -> None:
    """The dashboard sends a stranger to the login form; the token opens it."""
    page.goto(f"{base}/jobs")
    sync_api.expect(page).to_have_url(f"{base}/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()
    sync_api.expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()


def test_a_job_starts_and_is_cancelled_live_in_the_browser(dsn: str, dashboard: Dashboard) -> None:
    daemon, web, page = dashboard.daemon, dashboard.web, dashboard.page
    expect = sync_api.expect
    token = run(dsn, "tokens", "create", "browser", "--role", "admin").stdout.strip().splitlines()[-1]

    log_in(page, web.base, token)

    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    expect(page.locator("#jobs")).to_contain_text("no jobs")
    page.evaluate("window.__kept = 1")

    # another application enqueues a job that runs until it is cancelled, for a hostile user_id
    with psycopg.connect(dsn, autocommit=True) as conn:
        job_id = str(jobcron.enqueue(conn, "cooperative", user_id=HOSTILE))
    row = page.locator("#jobs tr", has_text=job_id)
    expect(row).to_contain_text("processing")
    assert page.evaluate("window.__kept") == 1, "the page was reloaded, not refreshed in place"

    # the user_id is shown as text, and no script came of it (the check of the DOM matters: the
    # Content-Security-Policy alone would stop an inline script that escaping had let through)
    expect(row).to_contain_text(HOSTILE)
    assert page.locator("#live script").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"

    page.get_by_role("link", name=job_id).click()
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()
    expect(page.locator("#job-status")).to_have_text("processing")
    expect(page.locator("#live")).to_contain_text(HOSTILE)
    assert page.locator("#live script").count() == 0

    # Cancel asks the running job to stop; the form's answer is a new page (the old one's marker is
    # gone), which then shows the end without a reload
    page.evaluate("window.__kept = 'before the form'")
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.wait_for_function("() => window.__kept === undefined")
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()
    page.evaluate("window.__kept = 2")
    expect(page.locator("#job-status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)
    assert page.evaluate("window.__kept") == 2, "the page was reloaded, not refreshed in place"

    daemon.wait_event("job_cancelled", job_id=job_id)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert dashboard.problems == [], dashboard.problems


def test_a_schedule_is_previewed_and_created_and_typing_survives_live_refreshes(
    dsn: str, dashboard: Dashboard
) -> None:
    web, page = dashboard.web, dashboard.page
    expect = sync_api.expect
    token = run(dsn, "tokens", "create", "planner", "--role", "admin").stdout.strip().splitlines()[-1]
    log_in(page, web.base, token)

    page.get_by_role("link", name="Schedules", exact=True).click()
    page.get_by_role("link", name="New schedule").click()
    page.get_by_label("name").fill("every quarter hour")
    page.get_by_label("job type").fill("noop")
    page.get_by_label("kind").select_option("interval")
    page.get_by_label("interval: every").fill("15m")
    page.get_by_role("button", name="Preview next runs").click()
    expect(page.locator("#preview li")).to_have_count(5)
    assert "every quarter hour" in page.get_by_label("name").input_value()  # the form keeps what was typed
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name="Schedule every quarter hour")).to_be_visible()
    expect(page.locator("#schedule-state")).to_have_text("active")

    # a live page does not swap its forms away while someone types into them
    page.get_by_role("link", name="Jobs", exact=True).click()
    typed = page.locator("form[action='/jobs/new'] input[name=job_type]")
    typed.fill("half-typed")
    page.locator("body").click(position={"x": 5, "y": 5})  # focus leaves the field; the text stays changed
    with psycopg.connect(dsn, autocommit=True) as conn:
        jobcron.enqueue(conn, "noop")  # an event, and then the 3 s refresh, would both redraw the page
    page.wait_for_timeout(4_000)  # longer than one refresh period: the absence of a redraw is the point
    assert typed.input_value() == "half-typed"
    assert dashboard.problems == [], dashboard.problems
