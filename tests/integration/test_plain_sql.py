"""The plain-SQL snippets of docs/clients.md, run as written: the docs stay true."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tests.factories import status_counts

Conn = psycopg.Connection[dict[str, Any]]
DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"


def snippet(name: str) -> str:
    """The SQL block that follows `<!-- snippet: NAME ... -->` in docs/clients.md."""
    found = re.search(rf"<!-- snippet: {re.escape(name)}\b.*?-->\n```sql\n(.*?)```", DOC.read_text(), re.S)
    assert found, f"docs/clients.md has no snippet {name!r}"
    return found.group(1)


def test_the_dedup_insert_enqueues_once_while_the_job_is_pending_and_again_after_it_finished(
    conn: Conn,
) -> None:
    sql = snippet("dedup-insert")
    first = conn.execute(sql).fetchall()
    assert len(first) == 1
    assert conn.execute(sql).fetchall() == []  # the key is taken while the job is pending
    assert status_counts(conn) == {"pending": 1}
    conn.execute(
        "UPDATE processing_jobs SET status = 'cancelled', completed_at = now() WHERE id = %s",
        (first[0]["id"],),
    )
    again = conn.execute(sql).fetchall()
    assert len(again) == 1 and again != first  # a finished job no longer holds its key


def test_without_the_predicate_on_conflict_is_refused(conn: Conn) -> None:
    sql = snippet("dedup-insert").replace(
        "WHERE dedup_key IS NOT NULL AND status IN ('pending', 'processing')\n", ""
    )
    try:
        conn.execute(sql)
    except psycopg.errors.InvalidColumnReference as exc:
        assert "no unique or exclusion constraint matching the ON CONFLICT specification" in str(exc)
    else:
        raise AssertionError("ON CONFLICT without the index's predicate was accepted")


def test_a_naive_time_at_a_named_zone_means_that_zone(conn: Conn) -> None:
    conn.execute("SET TimeZone = 'UTC'")
    row = conn.execute(snippet("naive-time")).fetchone()
    assert row is not None
    assert row["scheduled_at"] == datetime(2026, 12, 24, 7, 0, tzinfo=UTC)  # 08:00 in Berlin is 07:00 UTC


def test_any_language_enqueue_then_listen_and_read_back(conn: Conn, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN jobcron_events")
        row = conn.execute(snippet("any-language-enqueue")).fetchone()
        assert row is not None
        conn.execute(
            "UPDATE processing_jobs SET status = 'completed', completed_at = now(), result = '{\"ok\": true}', "
            "attempts = 1 WHERE id = %s",
            (row["id"],),
        )
        conn.commit()  # what the daemon's record does
        events = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert str(row["id"]) in events[0] and '"completed"' in events[0]
    found = conn.execute(snippet("any-language-read"), {"id": row["id"]}).fetchone()
    assert found is not None and found["status"] == "completed" and found["result"] == {"ok": True}


def test_a_schedule_inserted_as_the_docs_show_is_planned_and_fires(conn: Conn) -> None:
    from jobcron.schedules.firing import FIRED, PLANNED, fire_due

    row = conn.execute(snippet("schedule-insert")).fetchone()
    assert row is not None
    planned = fire_due(conn, "w")  # a daemon's schedules check
    assert [(f.schedule_id, f.outcome) for f in planned] == [(row["id"], PLANNED)]
    # its first run is now, rounded up to the whole second: this check or the next fires it
    fired = fire_due(conn, "w", now=planned[0].next_run_at)
    assert [(f.schedule_id, f.outcome) for f in fired] == [(row["id"], FIRED)]
    job = conn.execute("SELECT metadata FROM processing_jobs WHERE schedule_id = %s", (row["id"],)).fetchone()
    assert job == {"metadata": {"report": "daily"}}
