"""Firing due schedules: every daemon does it, and each occurrence enqueues exactly one job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from jobcron import store
from jobcron.db import ROW_REFUSED, Connection
from jobcron.errors import ScheduleError
from jobcron.schedules.rules import ScheduleSpec, latest_due, next_occurrence, validate

FIRE_BATCH = 50


class FiringOutcome(StrEnum):
    """What happened to one due schedule."""

    FIRED = "fired"  # a job was enqueued for the occurrence
    DUPLICATE = "duplicate"  # the occurrence had been fired already (the unique record said so)
    SKIPPED = "skipped"  # older than the catch-up window: moved on without a job
    FAILED = "failed"  # the job template was refused by the queue's constraints: this occurrence is lost
    INVALID = "invalid"  # the definition cannot be computed (edited by hand): the schedule is disabled
    PLANNED = "planned"  # inserted with plain SQL, without a next run: its first run was computed


# the members by their short names, as the daemon's schedule duty and the tests compare them
FIRED, DUPLICATE, SKIPPED, FAILED, INVALID, PLANNED = FiringOutcome


@dataclass(frozen=True)
class Firing:
    """What fire_due did with one due schedule."""

    schedule_id: int
    name: str
    occurrence_at: datetime
    outcome: FiringOutcome
    job_id: str | None = None
    next_run_at: datetime | None = None
    error: str | None = None


def spec_from_row(row: dict[str, Any]) -> ScheduleSpec:
    """The timing part of a job_schedules row."""
    return ScheduleSpec(
        kind=row["kind"],
        run_at=row["run_at"],
        interval_seconds=row["interval_seconds"],
        time_of_day=row["time_of_day"],
        weekdays=tuple(row["weekdays"]) if row["weekdays"] else None,
        day_of_month=row["day_of_month"],
        cron_expression=row["cron_expression"],
        timezone=row["timezone"],
        start_at=row["start_at"],
        end_at=row["end_at"],
        max_executions=row["max_executions"],
    )


def first_run(spec: ScheduleSpec, now: datetime, count: int = 0) -> datetime | None:
    """When a new, changed or resumed schedule runs next: its first occurrence from now on (now included)."""
    validate(spec)
    return next_occurrence(spec, now, count, inclusive=True)


def fire_due(
    conn: Connection,
    worker_id: str,
    now: datetime | None = None,
    limit: int = FIRE_BATCH,
    catch_up_seconds: float | None = None,
) -> list[Firing]:
    """Enqueue one job for each due schedule; safe with any number of daemons doing the same at once.

    After downtime a schedule runs once, for its latest missed occurrence; with catch_up_seconds set,
    only when that occurrence is at most that late (otherwise it moves on to its next occurrence).
    """
    with conn.transaction():
        # a schedule inserted with plain SQL has no next run yet: plan it first, so that one due now
        # fires in this same pass
        planned = [_plan_one(conn, row) for row in store.schedules_unplanned_locked(conn, now, limit)]
        # row locks with SKIP LOCKED share the due schedules out; the unique occurrence is the guarantee
        return planned + [
            _fire_one(conn, row, worker_id, catch_up_seconds)
            for row in store.schedules_due_locked(conn, now, limit)
        ]


def _plan_one(conn: Connection, row: dict[str, Any]) -> Firing:
    """Compute the first run of a schedule nobody planned, by the rules `schedules create` uses."""
    schedule_id, name, db_now = row["id"], row["name"], row["db_now"]
    try:
        following = first_run(spec_from_row(row), db_now, row["execution_count"])
    except ScheduleError as exc:
        store.schedule_advance(conn, schedule_id, None, None, 0)
        _tell_failure(conn, row, db_now, str(exc))
        return Firing(schedule_id, name, db_now, INVALID, error=str(exc))
    store.schedule_advance(conn, schedule_id, following, None, 0)
    if following is None:
        return Firing(schedule_id, name, db_now, INVALID, error="no occurrence from now on: nothing to fire")
    return Firing(schedule_id, name, following, PLANNED, next_run_at=following)


def _fire_one(
    conn: Connection, row: dict[str, Any], worker_id: str, catch_up_seconds: float | None
) -> Firing:
    schedule_id, name, db_now = row["id"], row["name"], row["db_now"]
    try:
        spec = spec_from_row(row)
        validate(spec)
        occurrence = latest_due(spec, db_now, row["next_run_at"]) or row["next_run_at"]
    except ScheduleError as exc:
        # it would fail the same way on every check: stop it, say why, keep firing the others
        store.schedule_advance(conn, schedule_id, None, None, 0)
        _tell_failure(conn, row, row["next_run_at"], str(exc))
        return Firing(schedule_id, name, row["next_run_at"], INVALID, error=str(exc))
    count = row["execution_count"]
    if catch_up_seconds is not None and db_now - occurrence > timedelta(seconds=catch_up_seconds):
        following = next_occurrence(spec, db_now, count)
        store.schedule_advance(conn, schedule_id, following, None, 0)
        return Firing(schedule_id, name, occurrence, SKIPPED, next_run_at=following)
    outcome, job_id, error = _enqueue(conn, row, occurrence, worker_id)
    if outcome == FIRED:
        count += 1
    elif outcome == FAILED:
        _tell_failure(conn, row, occurrence, error)
    following = next_occurrence(spec, max(occurrence, db_now), count)
    store.schedule_advance(
        conn, schedule_id, following, occurrence if outcome == FIRED else None, int(outcome == FIRED)
    )
    return Firing(schedule_id, name, occurrence, outcome, job_id, following, error)


def _tell_failure(
    conn: Connection, row: dict[str, Any], occurrence: datetime | None, error: str | None
) -> None:
    """schedule.failed webhooks (notifications.webhooks), in the firing's own transaction."""
    store.webhooks_schedule_failed(conn, row["id"], row["name"], row["job_type"], error, occurrence)


def _enqueue(
    conn: Connection, row: dict[str, Any], occurrence: datetime, worker_id: str
) -> tuple[FiringOutcome, str | None, str | None]:
    """Record the occurrence and enqueue its job, both or neither."""
    try:
        # a savepoint: a template the queue refuses costs this occurrence only, not the whole batch
        with conn.transaction():
            execution = store.schedule_execution_insert(conn, row["id"], occurrence, worker_id)
            if execution is None:
                return DUPLICATE, None, None
            job_id = store.insert_job(
                conn,
                job_type=row["job_type"],
                file_id=str(row["file_id"]) if row["file_id"] else None,
                user_id=row["user_id"],
                business_description=row["business_description"],
                metadata=row["metadata"],
                priority=row["priority"],
                max_retries=row["max_retries"],
                timeout_seconds=row["timeout_seconds"],
            )
            store.schedule_execution_link_job(conn, execution, job_id)
            return FIRED, job_id, None
    except ROW_REFUSED as exc:
        return FAILED, None, str(exc).strip().splitlines()[0][:300]


def state_of(row: dict[str, Any], now: datetime) -> str:
    """active, paused (has a future occurrence), finished (has none) or invalid."""
    if row["enabled"]:
        return "active"
    try:
        following = first_run(spec_from_row(row), now, row["execution_count"])
    except ScheduleError:
        return "invalid"
    return "paused" if following is not None else "finished"
