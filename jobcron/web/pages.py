"""The dashboard's pages: overview, jobs, a job, workers and safety, over the CLI's own functions.

Server-rendered and complete without JavaScript; static/jobcron.js swaps each page's #live part in
again when the event stream reports a change. Every form posts with the session's CSRF value and
every action needs an admin token (jobcron.web.session.acting); a refused action shows the CLI's
message.
"""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jobcron import bulk, client
from jobcron.admin import jobs as admin_jobs
from jobcron.admin import status as admin_status
from jobcron.admin.jobs import STATUSES
from jobcron.durations import parse_duration
from jobcron.errors import InvalidInput
from jobcron.jsontext import parse_json
from jobcron.web.session import acting, attempt, logged_in, refused, render
from jobcron.web.state import _db, _web

pages = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
CHART_MINUTES = 60
Csrf = Annotated[str, Form()]


def queue_summary(data: dict[str, Any]) -> dict[str, Any]:
    """collect_status's counts in seed 002's shape: the API's `queue` and the overview's numbers."""
    counts = data["counts"]
    return {
        "pending_jobs": counts["pending"],
        "waiting_jobs": counts.get("waiting", 0),
        "running_jobs": counts["processing"],
        "completed_jobs": counts.get("completed"),
        "failed_jobs": counts.get("failed"),
        "cancelled_jobs": counts.get("cancelled"),
        "oldest_pending_job": data["oldest_pending"],
    }


def chart(minutes: list[dict[str, int]], width: int = 600, height: int = 100) -> dict[str, Any]:
    """Bars for an inline SVG (no script, no inline style): completed stacked under failed, per minute."""
    top = max((m["completed"] + m["failed"] for m in minutes), default=0) or 1
    step = width / max(len(minutes), 1)
    bars = []
    for i, m in enumerate(minutes):
        done_h = height * m["completed"] / top
        fail_h = height * m["failed"] / top
        bars.append(
            {
                "x": round(i * step, 1),
                "w": round(max(step - 1, 1), 1),
                "done_y": round(height - done_h, 1),
                "done_h": round(done_h, 1),
                "fail_y": round(height - done_h - fail_h, 1),
                "fail_h": round(fail_h, 1),
                **m,
            }
        )
    return {
        "bars": bars,
        "width": width,
        "height": height,
        "top": top,
        "completed": sum(m["completed"] for m in minutes),
        "failed": sum(m["failed"] for m in minutes),
    }


@pages.get("/")
def overview(request: Request) -> HTMLResponse:
    viewer = logged_in(request)
    with _db(request) as conn:
        data = admin_status.collect_status(conn, _web(request).config)
        minutes = admin_status.throughput(conn, CHART_MINUTES)
    return render(request, "overview.html", viewer, q=queue_summary(data), status=data, chart=chart(minutes))


@pages.get("/jobs")
def jobs_page(
    request: Request, status: str = "", user: str = "", type: str = "", q: str = "", after: str = ""
) -> Response:
    viewer = logged_in(request)
    search = q.strip()
    if search:
        try:
            return RedirectResponse(f"/jobs/{admin_jobs.job_id_arg(search)}", status_code=303)
        except InvalidInput:
            user = search  # not a job id: a user
    filters = {"status": status, "user": user, "type": type}

    def listed() -> list[dict[str, Any]]:
        with _db(request) as conn:
            return admin_jobs.list_jobs(
                conn,
                statuses=[status] if status else (),
                user_id=user or None,
                job_type=type or None,
                limit=PAGE_SIZE,
                after=after or None,
            )

    found, error, code = attempt(listed)
    cursor = admin_jobs.page_cursor(found or [], PAGE_SIZE)
    return render(
        request,
        "jobs.html",
        viewer,
        code,
        jobs=found or [],
        error=error,
        statuses=STATUSES,
        filters=filters,
        next_page={**{k: v for k, v in filters.items() if v}, "after": cursor} if cursor else None,
        first_page={k: v for k, v in filters.items() if v} if after else None,
    )


def _text_or_none(value: str) -> str | None:
    return value.strip() or None


@pages.post("/jobs/new")
def job_new(
    request: Request,
    csrf: Csrf,
    job_type: Annotated[str, Form()] = "",
    user_id: Annotated[str, Form()] = "",
    priority: Annotated[str, Form()] = "",
    metadata: Annotated[str, Form()] = "",
    run_at: Annotated[str, Form()] = "",
) -> Response:
    """Enqueue one job from the jobs page's form, with `jobcron.enqueue`'s rules."""
    viewer = acting(request, csrf)
    fields: dict[str, Any] = {"job_type": job_type.strip()}
    if _text_or_none(user_id):
        fields["user_id"] = user_id.strip()
    if _text_or_none(run_at):
        fields["run_at"] = run_at.strip()

    def enqueue() -> tuple[str, bool]:
        if _text_or_none(priority):
            try:
                fields["priority"] = int(priority)
            except ValueError:
                raise InvalidInput(f"priority: not a whole number: {priority!r}") from None
        if _text_or_none(metadata):
            fields["metadata"] = parse_json(metadata)
        with _db(request) as conn:
            return client.enqueue_one(conn, fields, max_metadata_bytes=_max_bytes(request))

    made, error, code = attempt(enqueue)
    if made is None:
        return refused(request, viewer, error or "", code, "/jobs")
    return RedirectResponse(f"/jobs/{made[0]}", status_code=303)


@pages.post("/jobs/bulk")
def job_bulk(
    request: Request,
    csrf: Csrf,
    lines: Annotated[str, Form()] = "",
    format: Annotated[str, Form()] = "jsonl",
) -> Response:
    """Enqueue many jobs (JSON lines or CSV, as `enqueue --bulk`): all or nothing, bad lines named."""
    viewer = acting(request, csrf)

    def enqueue() -> bulk.BulkResult:
        with _db(request) as conn:
            return bulk.enqueue_bulk(conn, io.StringIO(lines), format, max_metadata_bytes=_max_bytes(request))

    result, error, code = attempt(enqueue)
    if result is None:
        return refused(request, viewer, error or "", code, "/jobs")
    return render(
        request,
        "done.html",
        viewer,
        title="Bulk enqueue",
        message=f"{result.inserted} job(s) enqueued from {result.lines} line(s)"
        + (
            f"; {result.duplicates} duplicate(s) of a pending or running dedup_key skipped"
            if result.duplicates
            else ""
        ),
        back="/jobs?status=pending",
    )


@pages.post("/jobs/purge")
def job_purge(request: Request, csrf: Csrf, older_than: Annotated[str, Form()] = "7d") -> Response:
    """Delete finished jobs older than a duration, as `jobs purge --older-than`."""
    viewer = acting(request, csrf)

    def purge() -> dict[str, Any]:
        seconds = parse_duration(older_than.strip(), "older_than")
        with _db(request) as conn:
            return admin_jobs.purge(conn, older_than_seconds=seconds)

    result, error, code = attempt(purge)
    if result is None:
        return refused(request, viewer, error or "", code, "/jobs")
    return render(
        request,
        "done.html",
        viewer,
        title="Clear finished jobs",
        message=f"{result['jobs']} finished job(s) older than {older_than.strip()} deleted",
        back="/jobs",
    )


@pages.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> HTMLResponse:
    viewer = logged_in(request)

    def shown() -> dict[str, Any]:
        with _db(request) as conn:
            return admin_jobs.show_job(conn, admin_jobs.job_id_arg(job_id))

    job, error, code = attempt(shown)
    if job is None:
        return refused(request, viewer, error or "", code, "/jobs")
    return render(request, "job.html", viewer, job=job, timeline=timeline(job))


def timeline(job: dict[str, Any]) -> list[dict[str, Any]]:
    """A job's moments in order: created, due, each failed attempt, started, finished."""
    moments = [
        {"at": job.get("created_at"), "what": "created"},
        {"at": job.get("scheduled_at"), "what": "due"},
        {"at": job.get("started_at"), "what": f"started (attempt {job.get('attempts')})"},
        {"at": job.get("completed_at"), "what": job.get("status")},
    ]
    for e in job.get("errors") or []:
        if isinstance(e, dict):
            moments.append({"at": e.get("at"), "what": f"attempt {e.get('attempt')}: {e.get('type')}"})
    return sorted((m for m in moments if isinstance(m["at"], str)), key=lambda m: str(m["at"]))


@pages.post("/jobs/{job_id}/{action}")
def job_action(request: Request, job_id: str, action: str, csrf: Csrf) -> Response:
    """cancel, terminate (a forced cancel) or retry, with the CLI's rules."""
    viewer = acting(request, csrf)
    actions = {
        "cancel": lambda conn, jid: admin_jobs.cancel_job(conn, jid, by=viewer.by),
        "terminate": lambda conn, jid: admin_jobs.cancel_job(conn, jid, force=True, by=viewer.by),
        "retry": lambda conn, jid: admin_jobs.retry_job(conn, jid, by=viewer.by),
    }
    if action not in actions:
        return refused(request, viewer, f"no action {action!r} (one of {', '.join(actions)})", 404, "/jobs")

    def act() -> str:
        jid = admin_jobs.job_id_arg(job_id)
        with _db(request) as conn:
            actions[action](conn, jid)
        return jid

    done, error, code = attempt(act)
    if done is None:
        return refused(request, viewer, error or "", code, f"/jobs/{job_id}")
    return RedirectResponse(f"/jobs/{done}", status_code=303)


@pages.get("/workers")
def workers_page(request: Request) -> HTMLResponse:
    viewer = logged_in(request)
    with _db(request) as conn:
        data = admin_status.collect_workers(conn, _web(request).config)
    return render(request, "workers.html", viewer, data=data)


@pages.get("/safety")
def safety_page(request: Request) -> HTMLResponse:
    viewer = logged_in(request)
    config = _web(request).config
    with _db(request) as conn:
        health = admin_status.collect_health(conn, config, admin_status.HealthThresholds())
        data = admin_status.collect_status(conn, config, running_limit=100)
        stale = admin_jobs.reset_stale(conn, config, dry_run=True)
    return render(request, "safety.html", viewer, health=health, status=data, stale=stale)


@pages.post("/safety/{action}")
def safety_action(
    request: Request, action: str, csrf: Csrf, job_type: Annotated[str, Form()] = ""
) -> Response:
    """cleanup-stale, pause and resume (one job type, or all when none is given)."""
    viewer = acting(request, csrf)
    kind = _text_or_none(job_type)
    actions = {
        "cleanup-stale": lambda conn: admin_jobs.reset_stale(conn, _web(request).config, by=viewer.by),
        "pause": lambda conn: admin_jobs.pause(conn, kind, by=viewer.by),
        "resume": lambda conn: admin_jobs.resume(conn, kind),
        "resume-all": lambda conn: admin_jobs.resume(conn, None, everything=True),
    }
    if action not in actions:
        return refused(request, viewer, f"no action {action!r} (one of {', '.join(actions)})", 404, "/safety")

    def act() -> dict[str, Any]:
        with _db(request) as conn:
            out: dict[str, Any] = actions[action](conn)
            return out

    result, error, code = attempt(act)
    if result is None:
        return refused(request, viewer, error or "", code, "/safety")
    return RedirectResponse("/safety", status_code=303)


def _max_bytes(request: Request) -> int:
    return _web(request).config.job_processing.max_metadata_bytes
