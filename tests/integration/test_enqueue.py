"""Enqueue: the Python API inside an application's transaction, and `job_cron enqueue` single and bulk."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import jobcron
from jobcron.errors import InvalidInput
from tests.factories import job
from tests.ops_cli import run, run_json

Conn = psycopg.Connection[dict[str, Any]]


def count(conn: Conn, where: str = "true") -> int:
    row = conn.execute(f"SELECT count(*) AS n FROM processing_jobs WHERE {where}").fetchone()
    assert row is not None
    return int(row["n"])


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_enqueue_lives_in_the_callers_transaction(conn: Conn, dsn: str) -> None:
    with psycopg.connect(dsn) as app:  # not autocommit, tuple rows: an application's own connection
        job_id = jobcron.enqueue(app, "noop", user_id="u1", metadata={"a": 1}, priority=5)
        assert count(conn) == 0, "enqueue must not commit on the caller's behalf"
        app.rollback()
        assert count(conn) == 0
        kept = jobcron.enqueue(app, "noop", file_path="/data/in.csv")
        app.commit()
    row = job(conn, kept)
    assert row["status"] == "pending" and row["file_id"] is not None
    assert job_id != kept


def test_enqueue_many_uses_a_savepoint_in_the_callers_transaction(conn: Conn, dsn: str) -> None:
    with psycopg.connect(dsn) as app:
        app.execute("INSERT INTO processing_jobs (job_type) VALUES ('mine')")
        assert (
            jobcron.enqueue_many(app, [{"job_type": "noop", "user_id": f"u{i}"} for i in range(500)]) == 500
        )
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            jobcron.enqueue_many(
                app, [{"job_type": "noop", "file_id": "00000000-0000-4000-8000-000000000000"}]
            )
        app.commit()  # the caller's own insert and the first batch survive the failed second one
    assert count(conn, "job_type = 'mine'") == 1 and count(conn, "job_type = 'noop'") == 500


def test_dedup_key_returns_the_job_already_waiting(conn: Conn) -> None:
    first = jobcron.enqueue(conn, "noop", dedup_key="nightly")
    assert jobcron.enqueue(conn, "noop", dedup_key="nightly") == first
    conn.execute(
        "UPDATE processing_jobs SET status = 'completed', completed_at = now() WHERE id = %s", (first,)
    )
    assert jobcron.enqueue(conn, "noop", dedup_key="nightly") != first
    rows = [{"job_type": "noop", "dedup_key": k} for k in ("nightly", "a", "a", "b")]
    assert jobcron.enqueue_many(conn, rows) == 2
    assert count(conn, "status = 'pending'") == 3


BAD_FIELDS = [
    ({"job_type": "no spaces"}, "job_type: 'no spaces' is not a job type name"),
    ({"user_id": "u1"}, "job_type: missing"),
    ({"job_type": "noop", "metadata": [1, 2]}, "metadata: must be a JSON object, got an array"),
    ({"job_type": "noop", "metadata": {"x": float("nan")}}, "metadata: not plain JSON"),
    ({"job_type": "noop", "priority": 5000}, "priority: must be between -1000 and 1000, got 5000"),
    ({"job_type": "noop", "priority": True}, "priority: expected an integer, got a boolean"),
    ({"job_type": "noop", "max_retries": -1}, "max_retries: must be between 0 and 1000"),
    ({"job_type": "noop", "timeout_seconds": 0}, "timeout_seconds: must be between 1"),
    ({"job_type": "noop", "run_at": datetime(2030, 1, 1)}, "run_at: a datetime without a timezone"),
    ({"job_type": "noop", "run_at": "tomorrow"}, "run_at: not an ISO 8601 date-time"),
    ({"job_type": "noop", "user_id": ""}, "user_id: must not be empty"),
    ({"job_type": "noop", "file_id": "f1"}, "file_id: not a UUID"),
    ({"job_type": "noop", "prority": 1}, "unknown field 'prority'"),
]


def test_bad_fields_are_refused_before_the_database(conn: Conn) -> None:
    for fields, message in BAD_FIELDS:
        with pytest.raises(InvalidInput) as err:
            jobcron.enqueue_many(conn, [{"job_type": "noop"}, fields])
        assert str(err.value).startswith(f"rows[1]: {message}"), (fields, str(err.value))
    assert count(conn) == 0


def test_metadata_over_the_limit(conn: Conn) -> None:
    with pytest.raises(InvalidInput, match=r"metadata: .* bytes, more than the limit of 100"):
        jobcron.enqueue(conn, "noop", metadata={"blob": "x" * 200}, max_metadata_bytes=100)


def test_cli_single_job_with_every_flag(conn: Conn, dsn: str, tmp_path: Path) -> None:
    data_file = tmp_path / "q3.csv"
    data_file.write_text("a,b\n1,2\n")
    before = datetime.now(UTC)
    out = run_json(
        dsn,
        "enqueue",
        "--type",
        "analysis",
        "--user",
        "ann",
        "--file",
        str(data_file),
        "--priority",
        "7",
        "--run-at",
        "10m",
        "--metadata",
        '{"quarter": 3}',
        "--dedup-key",
        "q3",
        "--max-retries",
        "2",
        "--timeout",
        "30m",
        "--description",
        "Q3 review",
    )
    assert out["created"] is True
    row = job(conn, out["id"])
    assert (row["job_type"], row["user_id"], row["priority"], row["max_retries"]) == ("analysis", "ann", 7, 2)
    assert row["metadata"] == {"quarter": 3} and row["timeout_seconds"] == 1800 and row["dedup_key"] == "q3"
    assert row["business_description"] == "Q3 review"
    assert before + timedelta(minutes=9) < row["scheduled_at"] < before + timedelta(minutes=11)
    file_row = conn.execute("SELECT * FROM files WHERE id = %s", (row["file_id"],)).fetchone()
    assert file_row is not None
    assert (file_row["file_path"], file_row["original_name"], file_row["size_bytes"]) == (
        str(data_file),
        "q3.csv",
        8,
    )
    again = run(dsn, "enqueue", "--type", "analysis", "--dedup-key", "q3")
    assert again.exit_code == 0 and f"job {out['id']} with dedup_key 'q3' is pending" in again.stdout


def test_cli_single_job_errors(conn: Conn, dsn: str) -> None:
    cases = [
        (["--metadata", "[1]"], "metadata: must be a JSON object, got an array"),
        (["--metadata", "{oops"], "--metadata: invalid JSON"),
        (["--priority", "2000"], "priority: must be between -1000 and 1000"),
        (["--run-at", "2030-01-01T10:00"], "--run-at: '2030-01-01T10:00' has no timezone"),
        (["--timeout", "forever"], "--timeout: not a duration"),
        (["--file-id", "00000000-0000-0000-0000-000000000001"], "--file-id: no files row with id"),
    ]
    for args, message in cases:
        result = run(dsn, "enqueue", "--type", "noop", *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("job_cron: error: ") and message in result.stderr, result.stderr
    missing = run(dsn, "enqueue", "--user", "u1")
    assert missing.exit_code == 2 and "--type: missing" in missing.stderr
    assert count(conn) == 0


def test_bulk_jsonl_all_or_nothing_names_line_17(conn: Conn, dsn: str, tmp_path: Path) -> None:
    rows: list[Any] = [{"job_type": "noop", "user_id": f"u{i}", "metadata": {"i": i}} for i in range(1, 31)]
    rows[16] = '{"job_type": "noop", "metadata": {"i": 17'  # line 17: cut short
    rows[22] = {"job_type": "noop", "priority": "high"}
    path = jsonl(tmp_path / "jobs.jsonl", rows)
    result = run(dsn, "enqueue", "--bulk", str(path))
    assert result.exit_code == 2
    first, second = result.stderr.splitlines()[:2]
    assert first.startswith("job_cron: error: line 17: invalid JSON")
    assert "nothing was enqueued" in first
    assert second == "job_cron:   line 23: priority: not an integer: 'high'"
    assert count(conn) == 0

    skipped = run(dsn, "enqueue", "--bulk", str(path), "--skip-bad", "--json")
    assert skipped.exit_code == 0
    data = json.loads(skipped.stdout)
    assert (data["inserted"], data["lines"]) == (28, 30)
    assert [s["line"] for s in data["skipped"]] == [17, 23]
    assert "job_cron: skipped line 17: invalid JSON" in skipped.stderr
    assert count(conn) == 28


def test_bulk_csv_with_defaults_from_flags(conn: Conn, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text(
        'user_id,priority,metadata,run_at\nann,3,"{""q"": 1}",\nbob,,,2030-01-01T00:00:00Z\ncarl,x,"{}",\n'
    )
    bad = run(dsn, "enqueue", "--bulk", str(path), "--type", "report")
    assert bad.exit_code == 2 and "line 4: priority: not an integer: 'x'" in bad.stderr
    path.write_text(path.read_text().replace("carl,x", "carl,1"))
    data = run_json(dsn, "enqueue", "--bulk", str(path), "--type", "report", "--max-retries", "1")
    assert data["inserted"] == 3
    rows = {
        r["user_id"]: r
        for r in conn.execute(
            "SELECT user_id, job_type, priority, metadata, max_retries, scheduled_at FROM processing_jobs"
        )
    }
    assert rows["ann"]["priority"] == 3 and rows["ann"]["metadata"] == {"q": 1}
    assert rows["bob"]["scheduled_at"].year == 2030 and rows["bob"]["priority"] == 0
    assert {r["job_type"] for r in rows.values()} == {"report"} and rows["carl"]["max_retries"] == 1
    header = tmp_path / "bad.csv"
    header.write_text("user_id,colour\nann,red\n")
    unknown = run(dsn, "enqueue", "--bulk", str(header), "--type", "report")
    assert unknown.exit_code == 2 and "line 1: unknown column 'colour'" in unknown.stderr


def test_bulk_from_stdin_with_files_and_duplicates_keeps_order(conn: Conn, dsn: str) -> None:
    lines = [
        json.dumps({"job_type": "noop", "user_id": "first"}),
        json.dumps({"job_type": "analysis", "file_path": "/data/a.csv", "dedup_key": "a"}),
        json.dumps({"job_type": "analysis", "file_path": "/data/a.csv", "dedup_key": "a"}),
        json.dumps({"job_type": "noop", "user_id": "last"}),
    ]
    result = run(dsn, "enqueue", "--bulk", "-", "--json", input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["inserted"], data["duplicates"]) == (3, 1)
    order = [
        (r["job_type"], r["user_id"])
        for r in conn.execute("SELECT job_type, user_id FROM processing_jobs ORDER BY seq")
    ]
    assert order == [("noop", "first"), ("analysis", None), ("noop", "last")]
    files = conn.execute(
        "SELECT f.file_path, j.id IS NOT NULL AS used FROM files f LEFT JOIN processing_jobs j ON j.file_id = f.id"
    ).fetchall()
    assert files == [{"file_path": "/data/a.csv", "used": True}], (
        "the skipped duplicate left no files row behind"
    )


def test_bulk_refuses_per_job_flags(dsn: str, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "j.jsonl", [{"job_type": "noop"}])
    result = run(dsn, "enqueue", "--bulk", str(path), "--dedup-key", "k")
    assert result.exit_code == 2 and "--dedup-key: give it per line" in result.stderr
    missing = run(dsn, "enqueue", "--bulk", str(tmp_path / "absent.jsonl"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr


def test_import_jobcron_stays_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, jobcron; print(sorted(m for m in sys.modules if m.startswith(('psycopg', 'click', 'jobcron.'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
