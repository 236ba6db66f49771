"""Plain-text rendering of the operator views (tables without colour; JSON is the machine format).

Values come from rows other applications write: every one is passed through `printable` (a control
character is shown as an escape such as \\x1b, a newline as \\n, so one value stays on one line),
and `echo` passes the whole text through it again before it reaches the terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import click

from jobcron.durations import format_duration
from jobcron.terminal import printable, printable_data

# Metadata keys whose values `jobs show` hides unless asked (tokens travel in job parameters).
SECRET_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|auth|credential|private", re.IGNORECASE)


def echo(text: str, err: bool = False) -> None:
    """Print human-readable text; no control character in it reaches the terminal (newlines do)."""
    click.echo(printable(text, keep_newlines=True), err=err)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """Left-aligned columns separated by two spaces."""
    cells = [[str(h) for h in headers], *[["-" if c is None else printable(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(indent + line for line in lines)


def num(value: int | None, estimated: bool = False) -> str:
    """1,234 (or ~1,234 when estimated, ? when unknown)."""
    if value is None:
        return "?"
    return f"{'~' if estimated else ''}{value:,}"


def ago(seconds: float | None) -> str:
    """'3m 05s ago'."""
    return "-" if seconds is None else f"{format_duration(seconds)} ago"


def dumps(value: Any) -> str:
    """Indented JSON with stable key order."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def redact(value: Any) -> Any:
    """A copy of JSON data with the values of secret-looking keys replaced by '***'."""
    if isinstance(value, Mapping):
        return {k: "***" if SECRET_KEY.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _parked(st: Mapping[str, Any]) -> str:
    parked = st.get("pending_parked") or 0
    return f", {num(parked)} waiting for their user or a paused type" if parked else ""


def render_status(st: Mapping[str, Any]) -> str:
    """The status report as text."""
    st = printable_data(st)
    c = st["counts"]
    est = not st["finished_counts_exact"]
    out = [f"job_cron status at {st['generated_at']}"]
    out.append(
        f"jobs        pending {num(c['pending'])} ({num(st['pending_due'])} due"
        f"{_parked(st)}, {num(st['pending_scheduled'])} later)   waiting {num(c.get('waiting') or 0)}   "
        f"running {num(c['processing'])}   "
        f"completed {num(c['completed'], est)}   failed {num(c['failed'], est)}   "
        f"cancelled {num(c['cancelled'], est)}" + ("   (~ estimated)" if est else "")
    )
    oldest = st["oldest_pending"]
    out.append(
        "oldest      no due pending job"
        if oldest is None
        else f"oldest      {oldest['id']} ({oldest['job_type']}, user {oldest['user_id'] or '-'}) "
        f"due {ago(oldest['age_seconds'])}"
    )
    h = st["last_hour"]
    rate = "-" if h["failure_rate"] is None else f"{h['failure_rate']:.1%}"
    out.append(
        f"last hour   {num(h['completed'])} completed, {num(h['failed'])} failed, "
        f"{num(h['cancelled'])} cancelled (failure rate {rate})"
    )
    paused = [p["job_type"] for p in st["paused"]]
    out.append("paused      " + (", ".join("all job types" if t == "*" else t for t in paused) or "no"))
    if st["stale_jobs"]:
        out.append(f"stale       {st['stale_jobs']} running job(s) without a recent heartbeat")
    w = st["workers"]
    out.append(f"workers     {w['alive']} alive, {w['dead']} dead")
    if w["list"]:
        out.append(render_workers_table(w["list"]))
    out.append(f"running     {num(c['processing'])}")
    if st["running"]:
        rows = [
            (
                r["id"],
                r["job_type"],
                r["user_id"],
                r["worker"],
                format_duration(r["duration_seconds"]),
                ago(r["heartbeat_age_seconds"]),
                r.get("progress_text") or "",
                "cancel requested" if r["cancel_requested"] else "",
            )
            for r in st["running"]
        ]
        out.append(table(("JOB", "TYPE", "USER", "WORKER", "RUNNING FOR", "HEARTBEAT", "PROGRESS", ""), rows))
    if st["users"]:
        out.append("busiest users")
        out.append(
            table(
                ("USER", "RUNNING", "PENDING"),
                [(u["user_id"], u["running"], u["pending"]) for u in st["users"]],
            )
        )
    s = st["schedules_due"]
    out.append(f"schedules   {s['count']} due")
    if s["list"]:
        due = [(x["id"], x["name"], x["job_type"], ago(x["overdue_seconds"])) for x in s["list"]]
        out.append(table(("ID", "NAME", "TYPE", "DUE"), due))
    return "\n".join(out)


def render_workers_table(workers: Sequence[Mapping[str, Any]]) -> str:
    """One line per daemon."""
    rows = [
        (
            w["id"],
            w["host"],
            w["pid"],
            w["state"] if w["alive"] else "dead",
            ago(w["last_seen_seconds"]),
            w["job"]["id"] if w["job"] else "",
            w["job"]["job_type"] if w["job"] else "",
            format_duration(w["job"]["running_seconds"]) if w["job"] else "",
        )
        for w in workers
    ]
    return table(("WORKER", "HOST", "PID", "STATE", "LAST SEEN", "JOB", "TYPE", "RUNNING FOR"), rows)


def render_jobs(jobs: Sequence[Mapping[str, Any]]) -> str:
    """The `jobs list` table."""
    rows = []
    for j in jobs:
        note = j["error_message"] or ""
        if j["status"] == "processing":
            note = f"on {j['locked_by']}" + (" (cancel requested)" if j["cancel_requested"] else "")
        rows.append(
            (
                j["id"],
                j["status"],
                j["job_type"],
                j["user_id"],
                j["priority"],
                j["attempts"],
                j["created_at"][:19].replace("T", " "),
                note[:60],
            )
        )
    return table(("ID", "STATUS", "TYPE", "USER", "PRIO", "ATTEMPTS", "CREATED", "NOTE"), rows, indent="")


def render_job(job: Mapping[str, Any]) -> str:
    """The `jobs show` view (metadata and result as JSON, whose escapes keep them printable)."""
    omitted = job.get("omitted") or {}
    shown_json = {k: job[k] for k in ("metadata", "result")}
    job = printable_data({k: v for k, v in job.items() if k not in shown_json})
    keys = [
        "status",
        "job_type",
        "user_id",
        "priority",
        "attempts",
        "retry_count",
        "max_retries",
        "timeout_seconds",
        "dedup_key",
        "created_at",
        "scheduled_at",
        "started_at",
        "completed_at",
        "updated_at",
        "locked_by",
        "heartbeat_at",
        "cancel_requested",
        "business_description",
    ]
    out = [f"job {job['id']}"]
    out += [f"  {k:<21}{'-' if job.get(k) is None else job[k]}" for k in keys]
    if job.get("run_seconds") is not None:
        out.append(f"  {'run time':<21}{format_duration(job['run_seconds'])}")
    if job.get("file_id"):
        out.append(f"  {'file':<21}{job['file_id']} {job['file_path']} ({job['file_status']})")
    if job.get("schedule_id"):
        out.append(f"  {'schedule':<21}{job['schedule_id']} {job['schedule_name'] or ''}")
    if job.get("progress") is not None:
        out.append(f"  {'progress':<21}{job.get('progress_text')}")
    out.append(f"  {'error_message':<21}{job['error_message'] or '-'}")
    out += _relatives(job)
    for name, value in shown_json.items():
        if name in omitted:
            out.append(f"{name} (not shown: {omitted[name]['reason']})")
        else:
            out.append(f"{name}\n" + _indent(dumps(value)))
    errors = job["errors"] or []
    if "errors" in omitted:
        out.append(f"history (not shown: {omitted['errors']['reason']})")
    else:
        out.append(f"history ({len(errors)})")
    for e in errors:
        if not isinstance(e, Mapping):  # another application's entry: shown as it is
            out.append(f"  {e}")
            continue
        extra = f" by {e['by']}" if e.get("by") else (f" on {e['worker']}" if e.get("worker") else "")
        out.append(
            f"  #{e.get('attempt', '?')} {e.get('at', '')} {e.get('type', '')}: {e.get('message', '')}{extra}"
        )
    out.append(f"insights ({job['insights']})")
    for i in job.get("insights_list", []):
        out.append(f"  {i['id']} {i['insight_type']} confidence={i['confidence_score']}")
    return "\n".join(out)


def _relatives(job: Mapping[str, Any]) -> list[str]:
    """`jobs show`'s parents and children lines (nothing for a job without either)."""
    out = []
    for key, title in (("parents", "parents"), ("children", "children")):
        listed, total = job.get(key) or [], job.get(f"{key}_total") or 0
        if not total:
            continue
        note = " (runs even if one fails)" if key == "parents" and job.get("run_anyway") else ""
        if key == "parents" and job.get("status") == "waiting":
            note += f"; waiting for {job.get('waiting_on')}"
        out.append(f"{title} ({total}){note}")
        out += [f"  {r['id']} {r['job_type']} {r['status']}" for r in listed]
        if total > len(listed):
            out.append(f"  ... and {total - len(listed)} more")
    return out


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
