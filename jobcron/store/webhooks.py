"""Webhook subscriptions and the daemon's own outbox entries (sql/webhooks.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jobcron.db import Connection
from jobcron.store import _all, _exec, _one

__all__ = ["webhooks_listed", "webhooks_schedule_failed", "webhooks_sync"]


def webhooks_listed(conn: Connection) -> list[dict[str, Any]]:
    """The subscriptions the database holds."""
    return _all(conn, "webhooks_listed")


def webhooks_sync(conn: Connection, hooks: Sequence[dict[str, Any]]) -> int:
    """Make the subscriptions exactly `hooks` (name, events, job_types, max_retries); how many rows changed."""
    changed = _exec(conn, "webhooks_drop_others", {"names": [h["name"] for h in hooks]})
    for hook in hooks:
        changed += _exec(conn, "webhooks_upsert", dict(hook))
    return changed


def webhooks_schedule_failed(
    conn: Connection,
    schedule_id: int,
    name: str,
    job_type: str,
    error: str | None,
    occurrence: datetime | None,
) -> int:
    """Outbox entries for a schedule that failed to fire; how many deliveries were made."""
    row = _one(
        conn,
        "webhooks_schedule_failed",
        {
            "schedule_id": schedule_id,
            "name": name,
            "job_type": job_type,
            "error": error,
            "occurrence": occurrence,
        },
    )
    return int(row["made"]) if row else 0
