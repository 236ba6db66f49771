"""What an application may do with each column of the tables it shares with jobcron.

One list for every integration: `jobcron.contrib.sqlalchemy` and `jobcron.contrib.django` map the
tables from it, and tests/integration/test_contrib_columns.py checks it against a migrated database
(a column a migration adds fails that test until it is listed here) and against the INSERT grant
of deploy/sql/roles.sql's enqueuer role.

  APP       the application sets it when it inserts the row (or leaves it to the server's default)
  SERVER    the server or the daemon writes it; an application reads it, never writes it
  INTERNAL  the daemon's own bookkeeping (the lease, the claim's ordering): not mapped at all
"""

from __future__ import annotations

# Every table a migration creates: what an alembic filter must leave alone (a test checks the list).
TABLES = (
    "jobcron_migrations",
    "files",
    "job_schedules",
    "processing_jobs",
    "insights",
    "schedule_executions",
    "job_workers",
    "job_pauses",
    "jobcron_tokens",
    "jobcron_sessions",
    "job_dependencies",
    "jobcron_webhooks",
)

APP = "app"
SERVER = "server"
INTERNAL = "internal"

COLUMNS: dict[str, dict[str, str]] = {
    "processing_jobs": {
        "id": APP,  # default jobcron_uuid_v7(): time-ordered; leave it to the server
        "file_id": APP,
        "job_type": APP,
        "business_description": APP,
        "status": SERVER,
        "metadata": APP,
        "retry_count": SERVER,
        "created_at": SERVER,
        "started_at": SERVER,
        "completed_at": SERVER,
        "updated_at": SERVER,
        "error_message": SERVER,
        "seq": INTERNAL,  # GENERATED ALWAYS: the queue's tie-breaker
        "user_id": APP,
        "priority": APP,
        "scheduled_at": APP,
        "max_retries": APP,
        "attempts": SERVER,
        "locked_by": SERVER,  # the worker running it
        "locked_at": INTERNAL,
        "heartbeat_at": SERVER,
        "lease_token": INTERNAL,  # a running job's proof of ownership: the enqueuer may not read it
        "user_slot": INTERNAL,
        "timeout_seconds": APP,
        "cancel_requested": SERVER,
        "result": SERVER,
        "errors": SERVER,
        "progress": SERVER,  # ctx.progress(), written with the heartbeat
        "dedup_key": APP,
        "schedule_id": SERVER,
        "parked": INTERNAL,
        "enqueued_by": SERVER,  # current_user at the INSERT
        "depends_on": APP,  # the jobs this one waits for (they must exist); the server dedupes and sorts them
        "run_anyway": APP,  # with depends_on: run even if a parent fails or is cancelled
        "waiting_on": SERVER,  # parents not yet ended
    },
    "files": {
        "id": APP,
        "file_path": APP,
        "original_name": APP,
        "status": SERVER,
        "created_at": SERVER,
        "updated_at": SERVER,
        "user_id": APP,
        "size_bytes": APP,
        "enqueued_by": SERVER,
    },
    "insights": {  # written by the daemon with the job's result; applications read them
        "id": SERVER,
        "job_id": SERVER,
        "insight_type": SERVER,
        "content": SERVER,
        "confidence_score": SERVER,
        "created_at": SERVER,
        "file_id": SERVER,
    },
}


def mapped(table: str) -> list[str]:
    """The columns of a table that the integrations map (APP and SERVER), in table order."""
    return [name for name, kind in COLUMNS[table].items() if kind != INTERNAL]


def writable(table: str) -> list[str]:
    """The columns an application may give in an INSERT."""
    return [name for name, kind in COLUMNS[table].items() if kind == APP]
