"""`job_cron schedules ...` against a real database: every command, and bad input refused before writing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from click.testing import CliRunner, Result

from jobcron.cli import cli
from jobcron.schedules.firing import fire_due

Conn = psycopg.Connection[dict[str, Any]]
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def jc(dsn: str, tmp_path: Path) -> Any:
    """Run `job_cron --database-url DSN ...` in-process."""
    config = tmp_path / "config.json"
    config.write_text("{}")

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), "--database-url", dsn, *args])

    return invoke


def count(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) AS n FROM job_schedules").fetchone()
    assert row is not None
    return int(row["n"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "cron", "--cron", "61 * * * *"], "invalid cron expression '61 * * * *'"),
        (["--kind", "cron", "--cron", "0 0 30 2 *"], "never matches"),
        (
            ["--kind", "daily", "--at", "09:00", "--timezone", "Europe/Berlinn"],
            "unknown time zone 'Europe/Berlinn'",
        ),
        (
            ["--kind", "interval", "--every", "1h", "--start", "2030-01-02", "--end", "2030-01-01"],
            "must be after start",
        ),
        (["--kind", "once", "--run-at", "2001-01-01T00:00:00Z"], "is in the past"),
        (["--kind", "daily", "--at", "9am"], "--at: expected HH:MM"),
        (["--kind", "weekly", "--at", "09:00", "--weekdays", "mon,funday"], "unknown day 'funday'"),
        (["--kind", "weekly", "--at", "09:00"], "needs weekdays"),
        (["--kind", "weekly", "--at", "09:00", "--weekdays", "fri-mon"], "runs backwards"),
        (["--kind", "daily", "--at", "09:00", "--cron", "* * * * *"], "cron_expression does not apply"),
        (["--kind", "interval", "--every", "soon"], "--every: not a duration"),
        (["--kind", "interval", "--every", "1h", "--metadata", "[1]"], "must be a JSON object"),
        (["--kind", "interval", "--every", "1h", "--max-retries", "5000"], "--max-retries must be"),
        (["--kind", "interval", "--every", "1h", "--max-executions", "0"], "--max-executions"),
        (["--kind", "interval", "--every", "1h", "--file-id", "f" * 36], "--file-id: not a UUID"),
        (
            ["--kind", "interval", "--every", "1h", "--file-id", "00000000-0000-0000-0000-000000000001"],
            "--file-id: no file",
        ),
    ],
)
def test_bad_definitions_exit_2_naming_the_problem_and_write_nothing(
    jc: Any, conn: Conn, args: list[str], message: str
) -> None:
    result = jc("schedules", "add", "bad", "--type", "noop", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("job_cron: error: ") and message in result.stderr
    assert "Traceback" not in result.output
    assert count(conn) == 0


def test_add_list_show_update_pause_resume_remove(jc: Any, conn: Conn) -> None:
    added = jc(
        "schedules", "add", "nightly", "--type", "noop", "--kind", "daily", "--at", "02:30",
        "--timezone", "Europe/Berlin", "--metadata", '{"report": "daily"}', "--max-executions", "30",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "daily at 02:30 (Europe/Berlin); next run " in added.output
    assert (
        jc("schedules", "add", "nightly", "--type", "noop", "--kind", "daily", "--at", "03:00").exit_code == 1
    )
    assert jc("schedules", "add", "7", "--type", "noop", "--kind", "daily", "--at", "03:00").exit_code == 2

    [listed] = json.loads(jc("schedules", "list", "--json").output)
    assert (listed["name"], listed["state"], listed["execution_count"]) == ("nightly", "active", 0)
    next_run = datetime.fromisoformat(listed["next_run_at"])
    assert next_run.astimezone(BERLIN).strftime("%H:%M") == "02:30"
    assert "nightly" in jc("schedules", "list").output

    updated = jc("schedules", "update", "nightly", "--at", "04:15", "--priority", "5")
    assert updated.exit_code == 0, updated.output
    shown = json.loads(jc("schedules", "show", "nightly", "--json").output)
    assert (shown["time_of_day"], shown["priority"], shown["metadata"]) == (
        "04:15:00",
        5,
        {"report": "daily"},
    )
    assert shown["when"] == "daily at 04:15 (Europe/Berlin)" and shown["executions"] == []

    switched = jc("schedules", "update", str(shown["id"]), "--kind", "cron", "--cron", "*/5 * * * *")
    assert switched.exit_code == 0, switched.output
    shown = json.loads(jc("schedules", "show", "nightly", "--json").output)
    assert (shown["kind"], shown["time_of_day"], shown["cron_expression"]) == ("cron", None, "*/5 * * * *")
    assert jc("schedules", "update", "nightly", "--cron", "bogus").exit_code == 2

    assert jc("schedules", "pause", "nightly").exit_code == 0
    paused = json.loads(jc("schedules", "show", "nightly", "--json").output)
    assert (paused["state"], paused["enabled"], paused["next_run_at"]) == ("paused", False, None)
    resumed = jc("schedules", "resume", "nightly")
    assert resumed.exit_code == 0 and "resumed: next run" in resumed.output
    assert json.loads(jc("schedules", "show", "nightly", "--json").output)["state"] == "active"

    assert jc("schedules", "remove", "nightly").exit_code == 0
    assert count(conn) == 0
    missing = jc("schedules", "show", "nightly")
    assert missing.exit_code == 1 and "no schedule 'nightly'" in missing.stderr


def test_show_lists_executions_with_job_status_and_due_lists_due_ones(jc: Any, conn: Conn) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    added = jc(
        "schedules", "add", "often", "--type", "noop", "--kind", "interval", "--every", "10m",
        "--start", start.isoformat(), "--max-executions", "2",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "no schedule is due" in jc("schedules", "due").output
    assert len(fire_due(conn, "w", now=start)) == 1
    conn.execute("UPDATE processing_jobs SET status = 'completed', completed_at = now()")
    assert json.loads(jc("schedules", "due", "--json").output) == []  # the next one is 10 minutes on
    conn.execute("UPDATE job_schedules SET next_run_at = now() - interval '1 second'")
    [due] = json.loads(jc("schedules", "due", "--json").output)
    assert due["name"] == "often"
    assert len(fire_due(conn, "w", now=start + timedelta(minutes=10))) == 1

    shown = json.loads(jc("schedules", "show", "often", "--json").output)
    assert shown["execution_count"] == 2 and shown["state"] == "finished" and shown["next_run_at"] is None
    assert [e["job_status"] for e in shown["executions"]] == ["pending", "completed"]
    assert shown["execution_statuses"] == {"completed": 1, "pending": 1}
    text = jc("schedules", "show", "often").output
    assert "(finished)" in text and "completed 1, pending 1" in text and "latest executions:" in text
    listed = jc("schedules", "list").output
    assert "finished" in listed and "pending" in listed
    again = jc("schedules", "resume", "often")
    assert again.exit_code == 1 and "has run 2 times, max executions is 2" in again.stderr
    assert jc("schedules", "update", "often", "--max-executions", "none").exit_code == 0
    assert jc("schedules", "resume", "often").exit_code == 0


def test_local_times_and_weekday_ranges(jc: Any) -> None:
    added = jc(
        "schedules", "add", "office", "--type", "noop", "--kind", "weekly", "--weekdays", "mon-fri,sunday",
        "--at", "08:00", "--timezone", "America/New_York", "--end", "2030-06-30T18:00",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    shown = json.loads(jc("schedules", "show", "office", "--json").output)
    assert shown["weekdays"] == [1, 2, 3, 4, 5, 7]
    assert shown["end_at"] == "2030-06-30T22:00:00+00:00"  # a time without offset is in the schedule's zone
    assert shown["when"] == "weekly on mon,tue,wed,thu,fri,sun at 08:00 (America/New_York)"
