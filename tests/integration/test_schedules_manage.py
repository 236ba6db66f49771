"""Schedule management called as plain functions, without click: refusals are jobcron errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from jobcron.errors import InvalidInput, ScheduleFinished, ScheduleNameTaken, ScheduleNotFound
from jobcron.schedules import manage
from jobcron.schedules.firing import fire_due

Conn = psycopg.Connection[dict[str, Any]]


def flags(**given: Any) -> dict[str, Any]:
    return {"job_type": "noop", **given}


def test_a_definition_is_checked_without_a_database() -> None:
    fields = manage.new_definition("hourly", flags(kind="interval", every="1.5h", timezone="Europe/Berlin"))
    assert (fields["interval_seconds"], fields["timezone"], fields["priority"]) == (5400, "Europe/Berlin", 0)
    for name, given, message in [
        ("7", flags(kind="interval", every="1h"), "NAME must be"),
        ("x", flags(kind="interval", every="soon"), "--every: not a duration"),
        ("x", flags(kind="interval", every="1.5s"), "--every: '1.5s' is not a whole number of seconds"),
        ("x", flags(kind="daily", at="09:00", cron_expression="* * * * *"), "cron_expression does not apply"),
        (
            "x",
            flags(kind="interval", every="1h", metadata='{"n": ' + "1" * 5000 + "}"),
            "--metadata: invalid",
        ),
        ("x", flags(kind="interval", every="1h", timezone="Mars/Olympus"), "--timezone: unknown time zone"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            manage.new_definition(name, given)


def test_add_update_pause_resume_remove_as_functions(conn: Conn) -> None:
    fields = manage.new_definition("nightly", flags(kind="daily", at="03:00"))
    saved = manage.add(conn, "nightly", fields)
    assert saved.description == "daily at 03:00 (UTC)" and saved.next_run_at is not None
    with pytest.raises(ScheduleNameTaken, match="a schedule named 'nightly' exists already"):
        manage.add(conn, "nightly", fields)

    updated = manage.update(conn, "nightly", {"at": "04:30", "priority": 5})
    assert updated.schedule_id == saved.schedule_id and updated.fields["priority"] == 5
    row, next_run = manage.set_enabled(conn, "nightly", False)
    assert next_run is None and manage.show(conn, "nightly", 5)[0]["state"] == "paused"
    row, next_run = manage.set_enabled(conn, str(saved.schedule_id), True)
    assert next_run is not None and row["name"] == "nightly"
    assert [r["state"] for r in manage.list_all(conn)] == ["active"]

    assert manage.remove(conn, "nightly")["id"] == saved.schedule_id
    for call in (
        lambda: manage.remove(conn, "nightly"),
        lambda: manage.update(conn, "nightly", {"priority": 1}),
        lambda: manage.show(conn, "nightly", 5),
    ):
        with pytest.raises(ScheduleNotFound, match="no schedule 'nightly'"):
            call()


def test_a_refused_update_writes_nothing_and_a_finished_schedule_does_not_resume(conn: Conn) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    fields = manage.new_definition(
        "twice", flags(kind="interval", every="10m", start=start.isoformat(), max_executions="1")
    )
    manage.add(conn, "twice", fields)
    with pytest.raises(InvalidInput, match="--file-id: no file"):
        manage.update(conn, "twice", {"file_id": "00000000-0000-0000-0000-000000000001", "priority": 9})
    assert manage.show(conn, "twice", 5)[0]["priority"] == 0

    assert len(fire_due(conn, "w", now=start)) == 1
    with pytest.raises(ScheduleFinished, match="has run 1 times, max executions is 1"):
        manage.set_enabled(conn, "twice", True)
