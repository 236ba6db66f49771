"""SQL-shaped text through every CLI path that takes text: stored verbatim (or refused as a bad name, exit 2),
never executed. Every value reaches PostgreSQL as a parameter; ruff's S608 keeps string-built SQL out.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from jobcron.contrib.columns import TABLES as JOBCRON_TABLES
from tests.ops_cli import run

Conn = psycopg.Connection[dict[str, Any]]
EVIL = [
    "'; DROP TABLE processing_jobs; --",
    "Robert'); DROP TABLE files;--",
    '" OR 1=1 --',
    "$$; DROP TABLE job_schedules; $$",
    "%s %(job_type)s {0} \\' \\\\",
    "x' UNION SELECT password FROM pg_shadow --",
]
TABLES = set(JOBCRON_TABLES)  # every table the migrations create


def tables(conn: Conn) -> set[str]:
    return {
        r["tablename"] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }


def ok(dsn: str, *args: str, input: str | None = None) -> str:
    result = run(dsn, *args, input=input)
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.stdout


def refused(dsn: str, *args: str) -> str:
    result = run(dsn, *args)
    assert result.exit_code == 2 and "error" in result.output.lower(), f"{args}: {result.output}"
    return result.output


@pytest.mark.parametrize("evil", EVIL, ids=range(len(EVIL)))
def test_quote_laden_text_is_stored_verbatim_everywhere(dsn: str, conn: Conn, evil: str) -> None:
    # enqueue: every text flag
    job_id = ok(
        dsn,
        "enqueue",
        "--type",
        "noop",
        "--user",
        evil,
        "--description",
        evil,
        "--dedup-key",
        evil,
        "--file",
        evil,
        "--metadata",
        json.dumps({"note": evil, evil: 1}),
    ).split()[-1]
    row = conn.execute(
        "SELECT j.user_id, j.business_description, j.dedup_key, j.metadata, f.file_path"
        " FROM processing_jobs j JOIN files f ON f.id = j.file_id WHERE j.id = %s",
        (job_id,),
    ).fetchone()
    assert row == {
        "user_id": evil,
        "business_description": evil,
        "dedup_key": evil,
        "metadata": {"note": evil, evil: 1},
        "file_path": evil,
    }
    # a job type is a name: refused, not run
    refused(dsn, "enqueue", "--type", evil)
    # bulk: JSON lines and CSV
    line = json.dumps({"job_type": "noop", "user_id": evil + "-bulk", "business_description": evil})
    ok(dsn, "enqueue", "--bulk", "-", input=line + "\n")
    csv_text = 'job_type,user_id,metadata\nnoop,"{}","{}"\n'.format(
        (evil + "-csv").replace('"', '""'), json.dumps({"k": evil}).replace('"', '""')
    )
    ok(dsn, "enqueue", "--bulk", "-", "--format", "csv", input=csv_text)
    for suffix in ("-bulk", "-csv"):
        assert conn.execute(
            "SELECT count(*) AS n FROM processing_jobs WHERE user_id = %s", (evil + suffix,)
        ).fetchone() == {"n": 1}
    # filters of jobs list find exactly the rows that hold the text
    listed = json.loads(ok(dsn, "jobs", "list", "--user", evil, "--json"))
    assert [j["id"] for j in listed] == [job_id]
    assert json.loads(ok(dsn, "jobs", "list", "--type", evil, "--json")) == []
    refused(dsn, "jobs", "list", "--since", evil)
    for command in ("show", "cancel", "retry"):
        refused(dsn, "jobs", command, evil)
    # schedules: name, job type, user, description, metadata
    name = evil[:150]
    ok(
        dsn,
        "schedules",
        "add",
        name,
        "--type",
        evil,
        "--kind",
        "interval",
        "--every",
        "1h",
        "--user",
        evil,
        "--description",
        evil,
        "--metadata",
        json.dumps({"note": evil}),
    )
    stored = conn.execute(
        "SELECT job_type, user_id, business_description, metadata FROM job_schedules WHERE name = %s", (name,)
    ).fetchone()
    assert stored == {
        "job_type": evil,
        "user_id": evil,
        "business_description": evil,
        "metadata": {"note": evil},
    }
    assert evil in ok(dsn, "schedules", "show", name)
    ok(dsn, "schedules", "update", name, "--description", evil + "!")
    ok(dsn, "schedules", "pause", name)
    ok(dsn, "schedules", "resume", name)
    refused(
        dsn,
        "schedules",
        "add",
        "other",
        "--type",
        "noop",
        "--kind",
        "interval",
        "--every",
        "1h",
        "--timezone",
        evil,
    )
    ok(dsn, "schedules", "remove", name)
    # pause / resume take a job type name: refused as one
    refused(dsn, "pause", "--type", evil)
    refused(dsn, "resume", "--type", evil)
    # nothing was dropped, nothing else changed
    assert tables(conn) == TABLES
    assert conn.execute("SELECT count(*) AS n FROM job_schedules").fetchone() == {"n": 0}
    assert conn.execute("SELECT count(*) AS n FROM job_pauses").fetchone() == {"n": 0}
