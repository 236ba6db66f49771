"""What the operator sees: queue status, workers and health, as plain JSON-ready dicts (the SQL is the
store's named queries; this module picks them and shapes their rows).

Counts of pending and running jobs are exact (partial indexes keep them cheap). Counting finished
jobs needs a full scan, so on a large table (more than EXACT_COUNT_MAX_BYTES) the totals per finished
status are estimated from the planner's statistics and flagged `finished_counts_exact: false`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobcron import migrate, store
from jobcron.admin.jobs import progress_line
from jobcron.config import Config
from jobcron.db import Connection

STATUSES = ("waiting", "pending", "processing", "completed", "failed", "cancelled")
FINISHED = ("completed", "failed", "cancelled")
EXACT_COUNT_MAX_BYTES = 32 * 1024 * 1024
DEAD_AFTER_HEARTBEATS = 3
FAILURE_WINDOW_SECONDS = 3600.0


def dead_after_seconds(config: Config) -> float:
    """A daemon whose row was not refreshed for this long is dead (three missed worker heartbeats)."""
    return DEAD_AFTER_HEARTBEATS * config.daemon.worker_heartbeat_seconds


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _estimate_finished(row: Mapping[str, Any] | None, active: int) -> dict[str, int] | None:
    """Finished counts: live rows (statistics collector) minus active jobs, split by the planner's status
    frequencies; None without statistics."""
    if row is None or not row["status_values"]:
        return None
    live = row["live_rows"] if row["live_rows"] else row["reltuples"]
    if live is None or live < 0:
        return None
    freq = dict(zip(row["status_values"], row["status_freqs"], strict=False))
    shares = {s: float(freq.get(s, 0.0)) for s in FINISHED}
    total = sum(shares.values())
    if total <= 0:
        return dict.fromkeys(FINISHED, 0)
    finished = max(0.0, live - active)
    return {s: round(finished * share / total) for s, share in shares.items()}


def collect_status(
    conn: Connection,
    config: Config,
    *,
    running_limit: int = 20,
    users_limit: int = 10,
    schedules_limit: int = 10,
    exact: bool | None = None,
) -> dict[str, Any]:
    """The queue at a glance: counts, oldest pending, running jobs, busiest users, workers, schedules, failures."""
    dead_after = dead_after_seconds(config)
    rows = store.ops_status_rows(
        conn,
        [
            ("db_now", {"now": None}),
            ("ops_active_counts", {}),
            ("ops_table_estimate", {}),
            ("ops_finished_since", {"seconds": FAILURE_WINDOW_SECONDS}),
            ("ops_oldest_pending", {}),
            ("ops_running_jobs", {"limit": running_limit}),
            ("ops_busiest_users", {"limit": users_limit}),
            ("ops_workers", {"dead_after_seconds": dead_after}),
            ("ops_schedules_due", {"limit": schedules_limit}),
            ("ops_pauses", {}),
            ("ops_stale_count", {"stale_after_seconds": config.daemon.stale_after_seconds}),
        ],
    )
    active = rows["ops_active_counts"][0]
    estimate_row = rows["ops_table_estimate"][0] if rows["ops_table_estimate"] else None
    small = estimate_row is None or estimate_row["bytes"] <= EXACT_COUNT_MAX_BYTES
    finished: dict[str, int] | None = None
    if exact is True or (exact is None and small):
        finished = store.ops_finished_counts(conn)
        finished = {s: finished.get(s, 0) for s in FINISHED}
        finished_exact = True
    else:
        finished = _estimate_finished(estimate_row, int(active["pending"]) + int(active["processing"]))
        finished_exact = False
    counts: dict[str, int | None] = {
        "waiting": int(active["waiting"]),
        "pending": int(active["pending"]),
        "processing": int(active["processing"]),
        **{s: (None if finished is None else finished[s]) for s in FINISHED},
    }
    window = rows["ops_finished_since"][0]
    done, failed = int(window["completed"]), int(window["failed"])
    oldest = rows["ops_oldest_pending"][0] if rows["ops_oldest_pending"] else None
    workers = [_worker(w) for w in rows["ops_workers"]]
    due = rows["ops_schedules_due"]
    stale = rows["ops_stale_count"][0]
    running = rows["ops_running_jobs"]
    return {
        "generated_at": _iso(rows["db_now"][0]["now"]),
        "counts": counts,
        "finished_counts_exact": finished_exact,
        "pending_due": int(active["pending"]) - int(active["pending_scheduled"]),
        "pending_scheduled": int(active["pending_scheduled"]),
        # due jobs the claim passed over and keeps out of its way until their user's job ends or their
        # type is resumed (counted in pending_due)
        "pending_parked": int(active["pending_parked"]),
        "oldest_pending": None
        if oldest is None
        else {
            "id": str(oldest["id"]),
            "job_type": oldest["job_type"],
            "user_id": oldest["user_id"],
            "priority": oldest["priority"],
            "created_at": _iso(oldest["created_at"]),
            "due_at": _iso(oldest["scheduled_at"]),
            "age_seconds": _seconds(oldest["age_seconds"]),
        },
        "running": [
            {
                "id": str(r["id"]),
                "job_type": r["job_type"],
                "user_id": r["user_id"],
                "worker": r["worker"],
                "started_at": _iso(r["started_at"]),
                "duration_seconds": _seconds(r["duration_seconds"]),
                "heartbeat_age_seconds": _seconds(r["heartbeat_age_seconds"]),
                "attempt": r["attempts"],
                "cancel_requested": r["cancel_requested"],
                "progress": r["progress"],
                "progress_text": progress_line(r["progress"]),
            }
            for r in running
        ],
        "stale_jobs": int(stale["n"]),
        "users": [
            {"user_id": u["user_id"], "running": int(u["running"]), "pending": int(u["pending"])}
            for u in rows["ops_busiest_users"]
        ],
        "workers": {
            "alive": sum(1 for w in workers if w["alive"]),
            "dead": sum(1 for w in workers if not w["alive"]),
            "dead_after_seconds": dead_after,
            "list": workers,
        },
        "schedules_due": {
            "count": int(due[0]["total"]) if due else 0,
            "list": [
                {
                    "id": s["id"],
                    "name": s["name"],
                    "job_type": s["job_type"],
                    "next_run_at": _iso(s["next_run_at"]),
                    "overdue_seconds": _seconds(s["overdue_seconds"]),
                }
                for s in due
            ],
        },
        "paused": [
            {"job_type": p["job_type"], "paused_at": _iso(p["paused_at"]), "paused_by": p["paused_by"]}
            for p in rows["ops_pauses"]
        ],
        "last_hour": {
            "completed": done,
            "failed": failed,
            "cancelled": int(window["cancelled"]),
            "failure_rate": None if done + failed == 0 else round(failed / (done + failed), 4),
        },
    }


def throughput(conn: Connection, minutes: int = 60) -> list[dict[str, int]]:
    """Completed and failed jobs in each of the last `minutes` minutes, oldest first (every minute present)."""
    found = {int(r["minutes_ago"]): r for r in store.ops_finished_by_minute(conn, minutes)}
    return [
        {
            "minutes_ago": ago,
            "completed": int(found[ago]["completed"]) if ago in found else 0,
            "failed": int(found[ago]["failed"]) if ago in found else 0,
        }
        for ago in range(minutes - 1, -1, -1)
    ]


def _worker(w: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": w["id"],
        "host": w["host"],
        "pid": w["pid"],
        "state": w["state"],
        "alive": bool(w["alive"]),
        "version": w["version"],
        "started_at": _iso(w["started_at"]),
        "last_seen_at": _iso(w["last_seen_at"]),
        "last_seen_seconds": _seconds(w["last_seen_seconds"]),
        "job": None
        if w["job_id"] is None
        else {
            "id": str(w["job_id"]),
            "job_type": w["job_type"],
            "user_id": w["job_user_id"],
            "running_seconds": _seconds(w["job_seconds"]),
        },
        "jobs_held": int(w["jobs_held"]),
    }


def collect_workers(conn: Connection, config: Config) -> dict[str, Any]:
    """Every daemon that registered: alive or dead, what it runs now."""
    dead_after = dead_after_seconds(config)
    workers = [_worker(w) for w in store.ops_workers(conn, dead_after)]
    return {
        "alive": sum(1 for w in workers if w["alive"]),
        "dead": sum(1 for w in workers if not w["alive"]),
        "dead_after_seconds": dead_after,
        "workers": workers,
    }


# --- health --------------------------------------------------------------------------------------------

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
EXIT_CODES = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}


@dataclass(frozen=True)
class HealthThresholds:
    """Where health turns degraded or unhealthy (the CLI's options, with these defaults)."""

    min_workers: int = 1
    max_pending_age_seconds: float = 600.0
    critical_pending_age_seconds: float = 3600.0
    max_failure_rate: float = 0.5
    min_finished_for_rate: int = 10


def _check(name: str, status: str, detail: str, **data: Any) -> dict[str, Any]:
    return {"name": name, "status": status, "detail": detail, **data}


def unreachable(error: str) -> dict[str, Any]:
    """The health report when the database cannot be reached."""
    checks = [_check("database", UNHEALTHY, f"unreachable: {error}")]
    return {"status": UNHEALTHY, "exit_code": EXIT_CODES[UNHEALTHY], "checks": checks}


def did_not_answer(detail: str) -> dict[str, Any]:
    """The health report when the database took longer than the probe may wait."""
    checks = [_check("database", UNHEALTHY, detail)]
    return {"status": UNHEALTHY, "exit_code": EXIT_CODES[UNHEALTHY], "checks": checks}


def collect_health(conn: Connection, config: Config, limits: HealthThresholds) -> dict[str, Any]:
    """Check the database, schema, workers, stale jobs, pending age, pauses and failure rate."""
    checks = [_check("database", HEALTHY, "reachable")]
    schema = migrate.state(conn)
    if not schema.current:
        pending = ", ".join(f"{m.version:04d}_{m.name}" for m in schema.pending)
        detail = f"pending migrations: {pending}" if pending else f"unknown migrations: {schema.unknown}"
        checks.append(_check("schema", UNHEALTHY, detail + " (run `job_cron migrate`)"))
        return _verdict(checks)
    checks.append(_check("schema", HEALTHY, f"current (version {max(schema.applied, default=0)})"))
    st = collect_status(conn, config, running_limit=1, users_limit=1, schedules_limit=1, exact=False)
    alive = st["workers"]["alive"]
    ok = alive >= limits.min_workers
    checks.append(
        _check(
            "workers",
            HEALTHY if ok else UNHEALTHY,
            f"{alive} alive, {st['workers']['dead']} dead (need {limits.min_workers})",
            alive=alive,
            dead=st["workers"]["dead"],
        )
    )
    stale = st["stale_jobs"]
    checks.append(
        _check(
            "stale_jobs",
            HEALTHY if stale == 0 else DEGRADED,
            "none"
            if stale == 0
            else f"{stale} running job(s) without a heartbeat for "
            f"{config.daemon.stale_after_seconds:g}s (rescue should take them; see `job_cron jobs reset-stale`)",
            count=stale,
        )
    )
    oldest = st["oldest_pending"]
    age = oldest["age_seconds"] if oldest else None
    if age is None or age <= limits.max_pending_age_seconds:
        level = HEALTHY
    elif age <= limits.critical_pending_age_seconds:
        level = DEGRADED
    else:
        level = UNHEALTHY
    detail = "no due pending job" if age is None else f"oldest due pending job waits {age:.0f}s"
    checks.append(
        _check(
            "oldest_pending",
            level,
            f"{detail} (degraded above {limits.max_pending_age_seconds:g}s, "
            f"unhealthy above {limits.critical_pending_age_seconds:g}s)",
            age_seconds=age,
        )
    )
    paused = [p["job_type"] for p in st["paused"]]
    checks.append(
        _check(
            "paused",
            DEGRADED if "*" in paused else HEALTHY,
            "claiming paused on every daemon (`job_cron resume`)"
            if "*" in paused
            else ("paused types: " + ", ".join(paused) if paused else "not paused"),
            job_types=paused,
        )
    )
    hour = st["last_hour"]
    rate = hour["failure_rate"]
    enough = hour["completed"] + hour["failed"] >= limits.min_finished_for_rate
    bad_rate = rate is not None and enough and rate > limits.max_failure_rate
    checks.append(
        _check(
            "failure_rate",
            DEGRADED if bad_rate else HEALTHY,
            f"{hour['failed']} failed / {hour['completed'] + hour['failed']} finished in the last hour"
            f" (degraded above {limits.max_failure_rate:.0%})",
            rate=rate,
        )
    )
    return _verdict(checks)


def _verdict(checks: list[dict[str, Any]]) -> dict[str, Any]:
    order = [HEALTHY, DEGRADED, UNHEALTHY]
    status = max((c["status"] for c in checks), key=order.index)
    return {"status": status, "exit_code": EXIT_CODES[status], "checks": checks}
