"""Job management for operators: list, show, cancel, retry, reset-stale, purge, pause and resume.

Plain functions over a connection (tests call them directly); they return JSON-ready dicts and raise
InvalidInput (bad arguments) or JobNotFound / JobCronError (the job is not in a state that allows it).
"""

from __future__ import annotations

import getpass
import json
import socket
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jobcron import store
from jobcron.config import Config
from jobcron.db import Connection
from jobcron.errors import DuplicateKey, InvalidInput, JobCronError, JobNotFound

STATUSES = ("waiting", "pending", "processing", "completed", "failed", "cancelled")
FINISHED = ("completed", "failed", "cancelled")
MAX_LIST = 10_000
PURGE_BATCH = 5000
ALL_TYPES = "*"
# `jobs show` prints metadata, result and error history up to this size (as JSON text) each; larger
# values stay on the server. The daemon refuses metadata over job_processing.max_metadata_bytes
# (64 KiB by default), so this shows every value a job could run with, and no 50 MB blob.
SHOW_MAX_BYTES = 1024 * 1024
# deeper values are not shown: parsing and printing them would exhaust Python's recursion limit
SHOW_MAX_DEPTH = 100
SHOWN_JSON_COLUMNS = ("metadata", "result", "errors")


def operator_name() -> str:
    """Who is acting, for the job's history: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def job_id_arg(text: str) -> str:
    """A job id as given on the command line, or InvalidInput."""
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise InvalidInput(f"not a job id (a UUID): {text!r}") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float):
        return round(value, 3)
    if hasattr(value, "is_finite"):  # Decimal (confidence scores)
        return float(value)
    return value


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _jsonable(v) for k, v in row.items()}


def progress_line(value: Any) -> str | None:
    """A job's stored progress in words ("42% reading rows (attempt 2)"), None when there is none.

    The column is the daemon's, but any writer may have put anything there: what is not the
    daemon's shape is shown as such, never an error.
    """
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("fraction"), int | float):
        return "unreadable progress value"
    text = f"{float(value['fraction']) * 100:.0f}%"
    if isinstance(value.get("message"), str) and value["message"]:
        text += f" {value['message']}"
    if isinstance(value.get("attempt"), int):
        text += f" (attempt {value['attempt']})"
    return text


def list_jobs(
    conn: Connection,
    *,
    statuses: Sequence[str] = (),
    user_id: str | None = None,
    job_type: str | None = None,
    since: datetime | None = None,
    since_seconds: float | None = None,
    limit: int = 50,
    after: str | None = None,
) -> list[dict[str, Any]]:
    """Jobs newest first, filtered by status, user, type and creation time.

    `after` is the cursor of the previous page's last row (page_cursor): the next page starts there,
    by (created_at, id), so a page stays right while new jobs arrive and costs the same at any depth.
    """
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise InvalidInput(f"--status: unknown status {bad[0]!r} (one of {', '.join(STATUSES)})")
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"--limit: must be between 1 and {MAX_LIST}, got {limit}")
    rows = store.ops_jobs_list(
        conn,
        statuses=list(dict.fromkeys(statuses)) or None,
        user_id=user_id,
        job_type=job_type,
        since=since,
        since_seconds=since_seconds,
        limit=limit,
        before=_cursor_arg(after) if after else None,
    )
    return [_clean(r) for r in rows]


def page_cursor(rows: Sequence[dict[str, Any]], limit: int) -> str | None:
    """The cursor of the page after these rows (list_jobs' `after`), None when this page is the last."""
    if len(rows) < limit or not rows:
        return None
    last = rows[-1]
    return f"{last['created_at']}_{last['id']}"


def _cursor_arg(text: str) -> tuple[datetime, str]:
    at, _, job_id = text.rpartition("_")
    try:
        return datetime.fromisoformat(at), str(uuid.UUID(job_id))
    except ValueError:
        raise InvalidInput(f"after: not a page cursor (give the `next` value of a page): {text!r}") from None


# parents and children listed by show_job (the totals are always given)
RELATIVES_LIMIT = 50


def show_job(
    conn: Connection, job_id: str, insights_limit: int = 20, max_bytes: int = SHOW_MAX_BYTES
) -> dict[str, Any]:
    """Everything about one job, with its error history, result, file, schedule and insights.

    A metadata, result or errors value larger than max_bytes, or nested deeper than SHOW_MAX_DEPTH,
    is None, and `omitted` says why: {"metadata": {"bytes": 52428812, "reason": "..."}}.
    """
    row = store.ops_job_show(conn, job_id, max_bytes)
    if row is None:
        raise JobNotFound(f"no job with id {job_id}")
    omitted: dict[str, dict[str, Any]] = {}
    for column in SHOWN_JSON_COLUMNS:
        size = row.pop(f"{column}_bytes")
        row[column], reason = _json_for_display(row[column], size, max_bytes)
        if reason is not None:
            omitted[column] = {"bytes": size, "reason": reason}
    job = _clean(row)
    job["progress_text"] = progress_line(job.get("progress"))
    job["omitted"] = omitted
    job["insights_list"] = [_clean(i) for i in store.ops_job_insights(conn, job_id, insights_limit)]
    relatives = store.ops_job_relatives(conn, job_id, RELATIVES_LIMIT)
    for relation in ("parent", "child"):
        rows = [r for r in relatives if r["relation"] == relation]
        key = "parents" if relation == "parent" else "children"
        job[key] = [
            {"id": str(r["id"]), "job_type": r["job_type"], "status": r["status"], "settled": r["settled"]}
            for r in rows
        ]
        job[f"{key}_total"] = int(rows[0]["total"]) if rows else 0
    return job


def _json_for_display(text: str | None, size: int | None, max_bytes: int) -> tuple[Any, str | None]:
    """The parsed value, or None and why it is not shown."""
    if text is None:
        if size is None:
            return None, None  # SQL NULL
        return None, f"{size:,} bytes, over the display cap of {max_bytes:,} bytes; --max-bytes raises it"
    too_deep = f"nested deeper than {SHOW_MAX_DEPTH} levels"
    try:
        value = json.loads(text)
    except RecursionError:
        return None, too_deep
    return (None, too_deep) if _deeper_than(value, SHOW_MAX_DEPTH) else (value, None)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON data nests more than limit arrays/objects (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


def cancel_job(
    conn: Connection, job_id: str, *, force: bool = False, wait_seconds: float = 0.0, by: str | None = None
) -> dict[str, Any]:
    """Cancel a job: pending ends now; running is asked to stop (forced: terminated at once). Optionally wait."""
    row = store.ops_job_cancel(conn, job_id, force=force, by=by or operator_name())
    if row is None:
        state = store.ops_job_state(conn, job_id)
        if state is None:
            raise JobNotFound(f"no job with id {job_id}")
        if state["status"] == "cancelled":
            return {"id": job_id, "status": "cancelled", "action": "already_cancelled"}
        raise JobCronError(
            f"job {job_id} is {state['status']}; only pending or running jobs can be cancelled"
        )
    if row["status"] == "cancelled":
        return {"id": job_id, "status": "cancelled", "action": "cancelled"}
    result = {
        "id": job_id,
        "status": "processing",
        "action": "force_requested" if force else "cancel_requested",
        "worker": row["locked_by"],
    }
    if wait_seconds > 0:
        result["status"] = wait_for_final(conn, job_id, wait_seconds)
    return result


def wait_for_final(conn: Connection, job_id: str, timeout: float) -> str:
    """Poll a job until it leaves 'processing' (or the timeout passes); its status."""
    pause = threading.Event()
    waited = 0.0
    step = 0.1
    while True:
        state = store.ops_job_state(conn, job_id)
        status = "missing" if state is None else str(state["status"])
        if status != "processing" or waited >= timeout:
            return status
        pause.wait(step)
        waited += step


def retry_job(conn: Connection, job_id: str, by: str | None = None) -> dict[str, Any]:
    """A failed or cancelled job back to pending with retry_count 0 (attempts and history kept)."""
    try:
        row = store.ops_job_retry(conn, job_id, by or operator_name())
    except DuplicateKey:
        state = store.ops_job_state(conn, job_id)
        key = state["dedup_key"] if state else None
        raise JobCronError(
            f"job {job_id} cannot go back to pending: another job with dedup_key {key!r} is pending or running"
        ) from None
    if row is None:
        state = store.ops_job_state(conn, job_id)
        if state is None:
            raise JobNotFound(f"no job with id {job_id}")
        raise JobCronError(f"job {job_id} is {state['status']}; only failed or cancelled jobs can be retried")
    return {
        "id": job_id,
        "status": "pending",
        "was": row["was"],
        "retry_count_was": row["old_retry_count"],
        "attempts": row["attempts"],
    }


def reset_stale(
    conn: Connection,
    config: Config,
    *,
    older_than_seconds: float | None = None,
    include_alive: bool = False,
    dry_run: bool = False,
    by: str | None = None,
) -> dict[str, Any]:
    """The emergency reset some applications run by hand, under the lease rules: running jobs whose worker stopped heartbeating.

    A job whose worker still heartbeats is taken only with include_alive (and older_than_seconds, so that
    "everything" is never one flag away); its worker then finds its lease gone and cannot record a result.
    """
    if include_alive and older_than_seconds is None:
        raise InvalidInput("--include-alive needs --older-than: say how long a live job must have run")
    stale_after = config.daemon.stale_after_seconds
    if dry_run:
        rows = store.ops_stale_jobs(
            conn,
            stale_after_seconds=stale_after,
            older_than_seconds=older_than_seconds,
            include_alive=include_alive,
        )
        return {"dry_run": True, "stale_after_seconds": stale_after, "jobs": [_clean(r) for r in rows]}
    rows = store.ops_reset_stale(
        conn,
        stale_after_seconds=stale_after,
        older_than_seconds=older_than_seconds,
        include_alive=include_alive,
        retry_failed_jobs=config.scheduler_settings.retry_failed_jobs,
        default_max_retries=config.scheduler_settings.max_retries,
        by=by or operator_name(),
    )
    return {"dry_run": False, "stale_after_seconds": stale_after, "jobs": [_clean(r) for r in rows]}


def purge(
    conn: Connection,
    *,
    older_than_seconds: float,
    statuses: Sequence[str] = FINISHED,
    dry_run: bool = False,
    batch: int = PURGE_BATCH,
) -> dict[str, Any]:
    """Delete finished jobs that finished longer ago than older_than_seconds, in short batches."""
    wanted = list(dict.fromkeys(statuses or FINISHED))
    bad = [s for s in wanted if s not in FINISHED]
    if bad:
        raise InvalidInput(
            f"--status: {bad[0]!r} cannot be purged; only finished jobs can ({', '.join(FINISHED)})"
        )
    if dry_run:
        n = store.ops_purge_count(conn, wanted, older_than_seconds)
        return {"dry_run": True, "statuses": wanted, "jobs": n}
    total = 0
    while True:
        # one short transaction per batch: no long lock, no huge undo if interrupted
        n = store.ops_purge_batch(conn, wanted, older_than_seconds, batch)
        total += n
        if n < batch:
            break
    return {"dry_run": False, "statuses": wanted, "jobs": total}


def _check_type(job_type: str | None) -> str:
    if job_type is None:
        return ALL_TYPES
    from jobcron.client import check_job_type

    return check_job_type(job_type)


def pause(conn: Connection, job_type: str | None = None, by: str | None = None) -> dict[str, Any]:
    """Stop claiming (of one job type, or all) on every daemon; running jobs finish."""
    target = _check_type(job_type)
    added = store.ops_pause(conn, target, by or operator_name())
    return {"job_type": target, "changed": added, "paused": _pauses(conn)}


def resume(conn: Connection, job_type: str | None = None, *, everything: bool = False) -> dict[str, Any]:
    """Lift the pause of one job type, the global pause, or (everything) every pause."""
    if everything and job_type is not None:
        raise InvalidInput("--all and --type: give one of them")
    lifted = store.ops_resume(conn, None if everything else [_check_type(job_type)])
    return {"lifted": lifted, "paused": _pauses(conn)}


def _pauses(conn: Connection) -> list[dict[str, Any]]:
    return [_clean(p) for p in store.ops_pauses(conn)]
