"""Rows other applications write, as the operator sees them: terminal control sequences in any text
column are shown as escapes in every human-readable output and console log line, never obeyed;
`--json` output and JSON log lines keep the exact values.
"""

from __future__ import annotations

import io
import json
import sys
import unicodedata
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jobcron import logs
from jobcron.daemon.worker import Worker
from tests.factories import insert_file, insert_job
from tests.ops_cli import run

Conn = psycopg.Connection[dict[str, Any]]
# OSC (retitle the terminal; it survives `less -R` and pipes), CSI (clear the screen), an 8-bit CSI,
# a right-to-left override, and a carriage return + newline that would forge a line of output
HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e\r\n  status  completed"
SHOWN = "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202e\\r\\n  status  completed"
BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def evil(tag: str) -> str:
    """A hostile value that names the column it sits in."""
    return f"{tag}{HOSTILE}"


def shown(tag: str) -> str:
    """How the operator must see evil(tag)."""
    return f"{tag}{SHOWN}"


def controls(text: str) -> list[str]:
    """Characters a terminal would act on (newlines between lines of output aside)."""
    return [c for c in text if c != "\n" and (unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in BIDI)]


@pytest.fixture
def rows(conn: Conn) -> dict[str, Any]:
    """One of everything an operator looks at, every text column hostile."""
    file_id = insert_file(conn, evil("path"), original_name=evil("name"))
    schedule = conn.execute(
        "INSERT INTO job_schedules (name, job_type, kind, interval_seconds, user_id, business_description,"
        " metadata, next_run_at) VALUES (%s, %s, 'interval', 3600, %s, %s, %s, now() - interval '1 minute')"
        " RETURNING id",
        (evil("sname"), evil("stype"), evil("suser"), evil("sdesc"), Jsonb({"k": evil("smeta")})),
    ).fetchone()
    assert schedule is not None
    pending = insert_job(
        conn,
        job_type=evil("ptype"),
        user_id=evil("puser"),
        business_description=evil("pdesc"),
        dedup_key=evil("pdedup"),
        metadata={"note": evil("pmeta")},
        file_id=file_id,
        schedule_id=schedule["id"],
    )
    running = insert_job(
        conn, status="processing", job_type=evil("rtype"), user_id=evil("ruser"), locked_by=evil("worker")
    )
    failed = insert_job(
        conn,
        status="failed",
        job_type=evil("ftype"),
        completed_at="now",
        error_message=evil("ferror"),
        errors=[
            {"attempt": 1, "type": evil("etype"), "message": evil("emessage"), "at": evil("eat")},
            {"attempt": 2, "type": "ResetByOperator", "message": "reset", "by": evil("eby")},
        ],
        result={"r": evil("fresult")},
    )
    conn.execute(
        "INSERT INTO insights (job_id, insight_type, content) VALUES (%s, %s, '{}')", (failed, evil("itype"))
    )
    conn.execute(
        "INSERT INTO schedule_executions (schedule_id, occurrence_at, job_id, fired_by)"
        " VALUES (%s, now(), %s, %s)",
        (schedule["id"], pending, evil("firedby")),
    )
    conn.execute(
        "INSERT INTO job_workers (id, host, pid, state) VALUES (%s, %s, 42, 'running')",
        (evil("worker"), evil("host")),
    )
    conn.execute("INSERT INTO job_pauses (job_type, paused_by) VALUES (%s, %s)", (evil("paused"), evil("by")))
    return {"pending": pending, "running": running, "failed": failed, "schedule": schedule["id"]}


def human(dsn: str, *args: str, codes: tuple[int, ...] = (0,)) -> str:
    """The command's whole output (stdout and stderr), checked to hold no control character."""
    result = run(dsn, *args)
    assert result.exit_code in codes, f"{args}: exit {result.exit_code}: {result.output}"
    assert not controls(result.output), f"{args} let {controls(result.output)!r} through:\n{result.output!r}"
    return result.output


def test_every_text_view_shows_control_characters_as_escapes(dsn: str, rows: dict[str, Any]) -> None:
    out = human(dsn, "status")
    for tag in ("ptype", "puser", "rtype", "ruser", "worker", "host", "paused", "sname", "stype"):
        assert shown(tag) in out, tag
    out = human(dsn, "jobs", "list")
    for tag in ("ptype", "puser", "rtype", "ruser", "ftype"):
        assert shown(tag) in out, tag
    assert shown("worker")[:40] in out and shown("ferror")[:40] in out  # the note column is cut to 60
    out = human(dsn, "jobs", "show", rows["pending"])
    for tag in ("ptype", "puser", "pdesc", "pdedup", "path", "sname"):
        assert shown(tag) in out, tag
    assert "pmeta\\u001b]0;owned" in out  # metadata is JSON: its own escapes
    out = human(dsn, "jobs", "show", rows["failed"])
    for tag in ("ftype", "ferror", "etype", "emessage", "eat", "eby", "itype"):
        assert shown(tag) in out, tag
    assert "fresult\\u001b]0;owned" in out
    out = human(dsn, "jobs", "show", rows["running"])
    assert shown("worker") in out and shown("rtype") in out
    out = human(dsn, "workers")
    assert shown("worker") in out and shown("host") in out and shown("rtype") in out
    assert shown("paused") in human(dsn, "health", codes=(0, 1, 2))
    out = human(dsn, "schedules", "list")
    assert shown("sname")[:20] in out
    out = human(dsn, "schedules", "show", str(rows["schedule"]))
    for tag in ("stype", "suser", "sdesc", "firedby"):
        assert shown(tag)[:18] in out, tag
    assert "smeta\\u001b]0;owned" in out
    assert "sname\\x1b]0;owned" in out  # the name is quoted the way Python quotes it
    out = human(dsn, "schedules", "due")
    assert shown("sname")[:20] in out and shown("stype")[:16] in out
    assert shown("paused") in human(dsn, "pause", "--type", "noop")
    assert shown("paused") in human(dsn, "resume", "--type", "noop")
    out = human(dsn, "jobs", "reset-stale", "--dry-run", "--include-alive", "--older-than", "0s")
    assert shown("rtype") in out and shown("worker") in out
    assert shown("worker") in human(dsn, "jobs", "cancel", rows["running"])


def test_a_bulk_file_with_control_characters_is_reported_escaped(dsn: str) -> None:
    good = json.dumps({"job_type": "noop", "user_id": evil("buser")})
    bad = json.dumps({"job_type": evil("btype")})
    result = run(dsn, "enqueue", "--bulk", "-", input=f"{good}\n{bad}\n{bad}\n")
    assert result.exit_code == 2, result.output
    assert not controls(result.output), repr(result.output)
    assert "line 2" in result.output and "line 3" in result.output and "btype" in result.output
    result = run(dsn, "enqueue", "--bulk", "-", "--skip-bad", input=f"{good}\n{bad}\n")
    assert result.exit_code == 0, result.output
    assert not controls(result.output), repr(result.output)
    assert "skipped line 2" in result.output and "btype" in result.output


def test_json_output_keeps_the_exact_values(dsn: str, rows: dict[str, Any]) -> None:
    def data(*args: str) -> Any:
        result = run(dsn, *args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    status = data("status")
    assert status["oldest_pending"]["user_id"] == evil("puser")
    assert status["running"][0]["worker"] == evil("worker")
    assert [p["job_type"] for p in status["paused"]] == [evil("paused")]
    listed = {j["id"]: j for j in data("jobs", "list")}
    assert listed[rows["failed"]]["error_message"] == evil("ferror")
    job = data("jobs", "show", rows["failed"])
    assert job["errors"][0]["message"] == evil("emessage") and job["result"] == {"r": evil("fresult")}
    assert data("jobs", "show", rows["pending"])["metadata"] == {"note": evil("pmeta")}
    assert data("workers")["workers"][0]["host"] == evil("host")
    assert data("schedules", "list")[0]["name"] == evil("sname")
    assert data("schedules", "show", str(rows["schedule"]))["executions"][0]["fired_by"] == evil("firedby")


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    logs.configure("info", "json", sys.stderr)


def test_console_log_lines_escape_what_json_log_lines_keep(
    conn: Conn, make_config: Any, log_stream: io.StringIO
) -> None:
    insert_job(conn, job_type=evil("ltype"), user_id=evil("luser"))
    insert_job(conn, job_type="noop", user_id="bare\x1b]0;owned\x07\x9b2J")  # no space: not quoted
    logs.configure("info", "console", log_stream)
    worker = Worker(make_config())
    assert worker.run_once() and worker.run_once()
    text = log_stream.getvalue()
    assert "job_failed" in text, text
    assert not controls(text), repr(text)
    # structlog quotes a value with a space the way Python does; these escapes are the same
    assert f"user_id='{shown('luser')}'" in text and f"job_type='{shown('ltype')}'" in text
    assert "user_id=bare\\x1b]0;owned\\x07\\x9b2J" in text
    assert len([line for line in text.splitlines() if "job_failed" in line]) == 1
    assert not any(line.startswith("  status  completed") for line in text.splitlines()), "a forged line"

    insert_job(conn, job_type=evil("jtype"), user_id=evil("juser"))
    json_stream = io.StringIO()
    logs.configure("info", "json", json_stream)
    assert Worker(make_config()).run_once()
    failed = [json.loads(line) for line in json_stream.getvalue().splitlines() if "job_failed" in line]
    assert [(f["job_type"], f["user_id"]) for f in failed] == [(evil("jtype"), evil("juser"))]
