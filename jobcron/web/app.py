"""The HTTP API under /api, over the same functions as the CLI (jobcron.admin, jobcron.client).

Endpoints that touch the database are plain functions run in the server's thread pool, each on a
connection of a small psycopg pool: the CLI's functions are synchronous, and running them as they
are keeps one set of rules and SQL. Only the event stream is asynchronous: one LISTEN connection
for the whole process, fanned out to every client (jobcron.web.events).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from jobcron import client, store
from jobcron.admin import jobs as admin_jobs
from jobcron.admin import status as admin_status
from jobcron.admin import tokens as admin_tokens
from jobcron.config import Config
from jobcron.db import DB_UNAVAILABLE, check_schema, connect_args, scrub
from jobcron.durations import parse_duration
from jobcron.errors import InvalidInput, JobCronError, JobNotFound, ScheduleNotFound, UnknownParent
from jobcron.schedules import manage as schedules_manage
from jobcron.schedules.firing import spec_from_row
from jobcron.schedules.rules import describe
from jobcron.web.events import EventHub
from jobcron.web.pages import pages, queue_summary
from jobcron.web.schedule_pages import schedule_pages
from jobcron.web.session import COOKIE, cookie_identity, session
from jobcron.web.state import Web, _db, _web

API_MAX_LIST = 500
SESSION_COOKIE = COOKIE
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def identity(request: Request, authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """The token's {name, role}; 401 without a valid `Authorization: Bearer` token.

    A dashboard session's cookie counts for reads (the pages' event stream: EventSource cannot send
    a header); an action through the API always needs the header, so no other site can make a
    logged-in browser act.
    """
    if not authorization and request.method == "GET" and request.cookies.get(SESSION_COOKIE):
        found = cookie_identity(request)
        if found is None:
            raise HTTPException(401, "the dashboard session has ended: log in again")
        return found
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401, "credentials needed: Authorization: Bearer <token from job_cron tokens create>"
        )
    with _db(request) as conn:
        found = admin_tokens.identify(conn, token.strip())
    if found is None:
        raise HTTPException(401, "unknown or revoked token")
    return found


def admin(who: Annotated[dict[str, Any], Depends(identity)]) -> dict[str, Any]:
    """An admin token's identity; 403 for a viewer."""
    if who["role"] != "admin":
        raise HTTPException(403, f"token {who['name']!r} is a viewer: this needs an admin token")
    return who


Viewer = Annotated[dict[str, Any], Depends(identity)]
Admin = Annotated[dict[str, Any], Depends(admin)]
api = APIRouter(prefix="/api")


def _by(who: dict[str, Any]) -> str:
    return f"web:{who['name']}"


def _max_bytes(request: Request) -> int:
    return _web(request).config.job_processing.max_metadata_bytes


@api.get("/status")
def status(request: Request, who: Viewer) -> dict[str, Any]:
    """The queue at a glance, in seed 002's shape under `queue`, plus workers and pauses."""
    with _db(request) as conn:
        data = admin_status.collect_status(conn, _web(request).config)
    return {
        "queue": queue_summary(data),
        "workers": data["workers"],
        "pauses": data["paused"],
        "status": data,
    }


@api.get("/jobs")
def jobs(
    request: Request,
    who: Viewer,
    status: Annotated[list[str] | None, Query()] = None,
    user: str | None = None,
    type: str | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=API_MAX_LIST)] = 50,
    after: str | None = None,
) -> dict[str, Any]:
    """Jobs newest first, filtered like `job_cron jobs list`; `next` is the `after` of the next page."""
    with _db(request) as conn:
        found = admin_jobs.list_jobs(
            conn, statuses=status or (), user_id=user, job_type=type, since=since, limit=limit, after=after
        )
    return {"jobs": found, "next": admin_jobs.page_cursor(found, limit)}


@api.get("/jobs/{job_id}")
def job(request: Request, job_id: str, who: Viewer) -> dict[str, Any]:
    """Everything about one job, as `job_cron jobs show --json`."""
    with _db(request) as conn:
        return admin_jobs.show_job(conn, admin_jobs.job_id_arg(job_id))


@api.post("/jobs", status_code=201)
def enqueue(request: Request, who: Admin, fields: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Enqueue one job: the fields of `jobcron.enqueue` (job_type, user_id, metadata, priority, run_at, ...)."""
    with _db(request) as conn:
        job_id, created = client.enqueue_one(conn, fields, max_metadata_bytes=_max_bytes(request))
    return {"id": job_id, "created": created}


@api.post("/jobs/bulk", status_code=201)
def enqueue_bulk(
    request: Request, who: Admin, rows: Annotated[list[Any], Body(embed=True, alias="jobs")]
) -> dict[str, Any]:
    """Enqueue many jobs, all or nothing: {"jobs": [{...}, ...]}; an error names the row and field."""
    with _db(request) as conn:
        inserted = client.enqueue_many(conn, rows, max_metadata_bytes=_max_bytes(request))
    return {"inserted": inserted, "given": len(rows)}


@api.post("/jobs/{job_id}/cancel")
def cancel(
    request: Request, job_id: str, who: Admin, force: Annotated[bool, Body(embed=True)] = False
) -> dict[str, Any]:
    """Cancel: a pending job ends now, a running one is asked to stop (force: terminated at once)."""
    with _db(request) as conn:
        return admin_jobs.cancel_job(conn, admin_jobs.job_id_arg(job_id), force=force, by=_by(who))


@api.post("/jobs/{job_id}/retry")
def retry(request: Request, job_id: str, who: Admin) -> dict[str, Any]:
    """A failed or cancelled job back to pending."""
    with _db(request) as conn:
        return admin_jobs.retry_job(conn, admin_jobs.job_id_arg(job_id), by=_by(who))


@api.delete("/jobs/completed")
def purge(request: Request, who: Admin, older_than: str = "7d") -> dict[str, Any]:
    """Delete finished jobs that finished longer ago than older_than (a duration: 7d, 12h, 30m)."""
    seconds = parse_duration(older_than, "older_than")
    with _db(request) as conn:
        return admin_jobs.purge(conn, older_than_seconds=seconds)


@api.post("/safety/cleanup-stale")
def cleanup_stale(request: Request, who: Admin) -> dict[str, Any]:
    """Put back running jobs whose worker stopped heartbeating, under the lease rules."""
    with _db(request) as conn:
        return admin_jobs.reset_stale(conn, _web(request).config)


@api.post("/safety/terminate/{job_id}")
def terminate(request: Request, job_id: str, who: Admin) -> dict[str, Any]:
    """Force-cancel a job: its worker terminates it at once."""
    with _db(request) as conn:
        return admin_jobs.cancel_job(conn, admin_jobs.job_id_arg(job_id), force=True, by=_by(who))


@api.get("/safety/health")
def health(request: Request, who: Viewer) -> JSONResponse:
    """`job_cron health --json`: 200 when healthy or degraded, 503 when unhealthy, with the reasons."""
    with _db(request) as conn:
        data = admin_status.collect_health(conn, _web(request).config, admin_status.HealthThresholds())
    return JSONResponse(data, status_code=503 if data["status"] == admin_status.UNHEALTHY else 200)


@api.post("/pause")
def pause(
    request: Request, who: Admin, job_type: Annotated[str | None, Body(embed=True)] = None
) -> dict[str, Any]:
    """Stop claiming on every daemon (one job type, or all)."""
    with _db(request) as conn:
        return admin_jobs.pause(conn, job_type, by=_by(who))


@api.post("/resume")
def resume(
    request: Request,
    who: Admin,
    job_type: Annotated[str | None, Body(embed=True)] = None,
    everything: Annotated[bool, Body(embed=True, alias="all")] = False,
) -> dict[str, Any]:
    """Lift the pause of one job type, the global pause, or every pause ({"all": true})."""
    with _db(request) as conn:
        return admin_jobs.resume(conn, job_type, everything=everything)


@api.get("/workers")
def workers(request: Request, who: Viewer) -> dict[str, Any]:
    """Every daemon: host, pid, state, current job, last seen."""
    with _db(request) as conn:
        return admin_status.collect_workers(conn, _web(request).config)


@api.get("/events")
async def events(request: Request, who: Viewer) -> StreamingResponse:
    """Server-sent events: every jobcron_events notification as `event: jobs` / `data: <payload>`."""
    return StreamingResponse(
        _web(request).hub.stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


# the body keys of POST/PUT /api/schedules: `job_cron schedules add|update`'s options by name
SCHEDULE_KEYS = (
    "job_type",
    "kind",
    "run_at",
    "every",
    "at",
    "weekdays",
    "day_of_month",
    "cron_expression",
    "timezone",
    "start",
    "end",
    "max_executions",
    "metadata",
    "user_id",
    "priority",
    "file_id",
    "business_description",
    "timeout_seconds",
    "max_retries",
)
_AS_TEXT = ("run_at", "every", "at", "weekdays", "start", "end", "max_executions")


def _schedule_flags(body: dict[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON body as the CLI's schedule options: the same parsers, so the same rules and messages."""
    unknown = sorted(k for k in body if k not in (*SCHEDULE_KEYS, *extra))
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r} (known: {', '.join(SCHEDULE_KEYS)})")
    flags: dict[str, Any] = {}
    for key in SCHEDULE_KEYS:
        value = body.get(key)
        if value is None:
            continue
        if key == "metadata":
            value = value if isinstance(value, str) else json.dumps(value)
        elif key in _AS_TEXT:
            value = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        flags[key] = value
    return flags


def _saved(saved: schedules_manage.Saved) -> dict[str, Any]:
    return {"id": saved.schedule_id, "next_run_at": saved.next_run_at, "description": saved.description}


@api.post("/schedules", status_code=201)
def schedule_add(request: Request, who: Admin, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Create a schedule: {"name", "job_type", "kind", ... `schedules add`'s options, "paused"}."""
    name = body.get("name")
    if not isinstance(name, str):
        raise InvalidInput("name: required (the schedule's name)")
    fields = schedules_manage.new_definition(name, _schedule_flags(body, ("name", "paused")))
    with _db(request) as conn:
        return _saved(schedules_manage.add(conn, name, fields, paused=bool(body.get("paused"))))


@api.post("/schedules/preview")
def schedule_preview(
    request: Request, who: Viewer, body: Annotated[dict[str, Any], Body()], count: int = 5
) -> dict[str, Any]:
    """The next runs of a definition (POST /api/schedules' body) from now on, checked, nothing written."""
    if not 1 <= count <= 100:
        raise InvalidInput(f"count: must be between 1 and 100, got {count}")
    given = body.get("name")
    name = given if isinstance(given, str) else "preview"
    fields = schedules_manage.new_definition(name, _schedule_flags(body, ("name", "paused")))
    with _db(request) as conn:
        now = store.schedule_db_now(conn)
    return {
        "next_runs": schedules_manage.upcoming(fields, now, count),
        "description": describe(spec_from_row(fields)),
    }


@api.get("/schedules")
def schedule_list(request: Request, who: Viewer) -> dict[str, Any]:
    """Every schedule, described, with its run count and next run."""
    with _db(request) as conn:
        return {"schedules": jsonable_encoder(schedules_manage.list_all(conn))}


@api.get("/schedules/due")
def schedule_due(request: Request, who: Viewer) -> dict[str, Any]:
    """Enabled schedules whose next run has come."""
    with _db(request) as conn:
        return {"schedules": jsonable_encoder(schedules_manage.due(conn))}


@api.get("/schedules/{key}")
def schedule_show(
    request: Request, key: str, who: Viewer, limit: Annotated[int, Query(ge=1, le=500)] = 20
) -> dict[str, Any]:
    """One schedule (by id or name), its latest executions and their outcomes."""
    with _db(request) as conn:
        row, executions, tally = schedules_manage.show(conn, key, limit)
    found: dict[str, Any] = jsonable_encoder({"schedule": row, "executions": executions, "tally": tally})
    return found


@api.put("/schedules/{key}")
def schedule_update(
    request: Request, key: str, who: Admin, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """Change a schedule (keys not given keep their value); {"enabled": false|true} pauses or resumes it."""
    enabled = body.get("enabled")
    flags = _schedule_flags(body, ("enabled",))
    with _db(request) as conn:
        out: dict[str, Any] = {}
        if flags:
            out = _saved(schedules_manage.update(conn, key, flags))
        if enabled is not None:
            row, next_run = schedules_manage.set_enabled(conn, key, bool(enabled))
            out = {**out, "id": row["id"], "enabled": bool(enabled), "next_run_at": next_run}
    if not out:
        raise InvalidInput("nothing to change: give schedule fields or enabled")
    changed: dict[str, Any] = jsonable_encoder(out)
    return changed


@api.delete("/schedules/{key}")
def schedule_remove(request: Request, key: str, who: Admin) -> dict[str, Any]:
    """Delete a schedule and its execution records (the jobs it enqueued stay)."""
    with _db(request) as conn:
        row = schedules_manage.remove(conn, key)
    return {"id": row["id"], "name": row["name"], "removed": True}


def _errors(app: FastAPI) -> None:
    """Errors as JSON {"error": message}, with the CLI's messages; never a 500 for bad input."""

    @app.exception_handler(InvalidInput)
    def invalid(request: Request, exc: InvalidInput) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(JobCronError)
    def refused(request: Request, exc: JobCronError) -> JSONResponse:
        code = (
            404
            if isinstance(exc, JobNotFound | ScheduleNotFound)
            else 422
            if isinstance(exc, UnknownParent)
            else 409
        )
        return JSONResponse({"error": scrub(str(exc), _web(request).dsn)}, status_code=code)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    for kind in DB_UNAVAILABLE:

        @app.exception_handler(kind)
        def unavailable(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"error": "database unavailable; try again"}, status_code=503)


def create_app(config: Config, *, pool_size: int = 4) -> FastAPI:
    """The API for this configuration; the pool opens with the app and closes with it."""
    dsn, params = connect_args(config, "web")
    schema = config.database.schema
    pool: ConnectionPool[Any] = ConnectionPool(
        dsn,
        kwargs={**params, "autocommit": True, "row_factory": dict_row},
        min_size=1,
        max_size=pool_size,
        open=False,
        configure=(lambda c: check_schema(c, schema))
        if schema and not config.database.prepared_statements
        else None,
    )
    web = Web(config, dsn, pool, EventHub(dsn, params))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=True, timeout=config.database.connect_timeout_seconds + 5)
        try:
            yield
        finally:
            await web.hub.close()
            pool.close()

    app = FastAPI(
        title="jobcron",
        summary="The queue's status, jobs, safety controls and pauses, with the CLI's rules.",
        lifespan=lifespan,
    )
    app.state.web = web
    app.include_router(api)
    app.include_router(session)
    app.include_router(pages)
    app.include_router(schedule_pages)
    app.mount("/static", StaticFiles(directory=Path(__file__).resolve().parent / "static"), name="static")
    _errors(app)

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Any:
        answer = await call_next(request)
        if not request.url.path.startswith(("/docs", "/redoc")):  # the OpenAPI page loads its own assets
            answer.headers["Content-Security-Policy"] = CSP
        answer.headers["X-Content-Type-Options"] = "nosniff"
        answer.headers["Referrer-Policy"] = "same-origin"
        return answer

    return app
