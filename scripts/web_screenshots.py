#!/usr/bin/env python3
"""Screenshots of the dashboard: a private demo (a daemon, job_cron web, jobs of each status, a running
one, schedules) photographed in headless Chromium.

    .venv/bin/python scripts/web_screenshots.py [--out docs]

PostgreSQL is found as the tests find it (JOBCRON_TEST_DSN, else testcontainers, else an embedded
server); the demo gets a database of its own, dropped at the end. Writes OUT/web-NAME.png at
1280x800 for the login form, the overview, the jobs list, the running job's page, workers, schedules,
a schedule's form with its preview, and safety. Needs Debian's
chromium (scripts/test.sh installs it as root) and playwright (the test extra).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

import jobcron  # noqa: E402
from jobcron import migrate  # noqa: E402
from tests.acceptance.daemon import Daemon, worker_daemon  # noqa: E402
from tests.acceptance.web import WebServer  # noqa: E402
from tests.ops_cli import run  # noqa: E402
from tests.pgserver import find_test_dsn  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 1280, 800
WAIT_MS = 30_000
PAGES = ("workers", "schedules", "safety")


@contextlib.contextmanager
def private_database() -> Iterator[str]:
    """A migrated database of the demo's own on the tests' server, dropped afterwards."""
    server, source = find_test_dsn()
    name = f"jobcron_shots_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(server, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            migrate.migrate(conn)
        print(f"web_screenshots: database {name} on the {source} server")
        yield dsn
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(dsn: str, *args: str) -> str:
    """A job_cron command that must succeed; its stdout."""
    result = run(dsn, *args)
    if result.exit_code != 0:
        raise SystemExit(f"web_screenshots: job_cron {' '.join(args)} failed: {result.output}")
    return result.stdout


def wait_status(conn: psycopg.Connection[Any], job_id: str, status: str, timeout: float = 60.0) -> None:
    """Until the job has this status (a final one through jobcron.wait, processing by polling)."""
    if status != "processing":
        job = jobcron.wait(conn, job_id, timeout=timeout)
        if job.status != status:
            raise SystemExit(f"web_screenshots: job {job_id} ended {job.status}, not {status}")
        return
    deadline = time.monotonic() + timeout
    while jobcron.get_job(conn, job_id).status != status:
        if time.monotonic() > deadline:
            raise SystemExit(f"web_screenshots: job {job_id} did not start in {timeout} s")
        time.sleep(0.2)


def fill(dsn: str) -> str:
    """Jobs of each status and two schedules; the id of the job left running."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        # the daemon runs one job at a time: the finished ones first, the running one last
        done = [
            (jobcron.enqueue(conn, "with_insights", user_id=user), "completed")
            for user in ("alice", "bob", "alice")
        ]
        done.append((jobcron.enqueue(conn, "permanent", user_id="carol"), "failed"))
        done.append((jobcron.enqueue(conn, "boom", user_id="dave", max_retries=0), "failed"))
        for job_id, status in done:
            wait_status(conn, job_id, status)
        later = jobcron.enqueue(conn, "cooperative", user_id="erin", run_at="2099-01-01T00:00:00Z")
        cli(dsn, "jobs", "cancel", later)
        jobcron.enqueue(conn, "with_insights", user_id="frank", run_at="2099-01-01T00:00:00Z")
        running = jobcron.enqueue(conn, "cooperative", user_id="grace", metadata={"report": "quarterly"})
        wait_status(conn, running, "processing")
    for name, *repeat in (
        ("nightly-report", "daily", "--at", "02:00"),
        ("sync", "interval", "--every", "15m"),
    ):
        cli(dsn, "schedules", "add", name, "--type", "with_insights", "--kind", *repeat)
    return running


def photograph(base: str, token: str, running: str, out: Path) -> list[Path]:
    """Log in and save each page; the files written."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    written: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.set_default_timeout(WAIT_MS)

            def shot(name: str) -> None:
                page.wait_for_load_state("load")
                path = out / f"web-{name}.png"
                page.screenshot(path=str(path))
                written.append(path)

            page.goto(f"{base}/login")
            shot("login")
            page.get_by_label("Token").fill(token)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("link", name=running)).to_be_visible()
            shot("overview")
            page.goto(f"{base}/jobs")
            expect(page.get_by_role("link", name=running)).to_be_visible()
            shot("jobs")
            page.goto(f"{base}/jobs/{running}")
            expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_visible()
            shot("job")
            for name in PAGES:
                answer = page.goto(f"{base}/{name}")
                if answer is None or answer.status != 200:
                    raise SystemExit(f"web_screenshots: /{name} answered {answer.status if answer else None}")
                shot(name)
            page.goto(f"{base}/schedules/new")
            page.get_by_label("name").fill("weekday-digest")
            page.get_by_label("job type").fill("with_insights")
            page.get_by_label("kind").select_option("weekly")
            page.get_by_label("daily, weekly, monthly: at").fill("08:30")
            page.get_by_label("weekly: weekdays").fill("mon-fri")
            page.get_by_label("time zone").fill("Europe/Paris")
            page.get_by_role("button", name="Preview next runs").click()
            expect(page.locator("#preview li")).to_have_count(5)
            shot("schedule-preview")
        finally:
            browser.close()
    return written


def main() -> int:
    """Set the demo up, photograph it, take it down."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="folder for web-*.png")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"web_screenshots: {CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with private_database() as dsn, tempfile.TemporaryDirectory(prefix="jobcron-shots-") as folder:
        daemon: Daemon | None = None
        web: WebServer | None = None
        try:
            daemon = worker_daemon(dsn, Path(folder), "demo-worker-1", ready=False)
            web = WebServer(dsn, Path(folder) / "web.log")
            daemon.wait_event("worker_started", timeout=30)
            token = cli(dsn, "tokens", "create", "demo", "--role", "admin").strip().splitlines()[-1]
            running = fill(dsn)
            written = photograph(web.base, token, running, args.out)
        finally:
            if web is not None:
                web.stop()
            if daemon is not None:
                daemon.stop()
    for path in written:
        print(f"web_screenshots: wrote {path}")
    print(f"web_screenshots: {len(written)} pages in {time.monotonic() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
