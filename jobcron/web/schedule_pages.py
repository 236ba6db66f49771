"""The dashboard's schedules: list, create and edit with a preview of the next runs, pause, resume, delete.

The form's fields are `job_cron schedules add|update`'s options by name, read by the same parsers
(jobcron.schedules.manage), so a form refuses what the CLI refuses, with the same message. Preview
renders the next occurrences of what the form holds without writing anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jobcron import store
from jobcron.errors import InvalidInput
from jobcron.schedules import manage
from jobcron.schedules.rules import CRON_MACROS, KINDS, WEEKDAY_NAMES, local
from jobcron.web.session import Viewer, acting, attempt, logged_in, refused, render
from jobcron.web.state import _db

schedule_pages = APIRouter(include_in_schema=False)
PREVIEW_COUNT = 5
# the form's timing fields per kind (the CLI's option names); the other kinds' fields are ignored
FORM_KIND_FIELDS = {
    "once": ("run_at",),
    "interval": ("every",),
    "daily": ("at",),
    "weekly": ("at", "weekdays"),
    "monthly": ("at", "day_of_month"),
    "cron": ("cron_expression",),
}
FORM_COMMON = ("job_type", "timezone", "start", "end", "max_executions", "user_id", "metadata")
FORM_NUMBERS = ("priority", "timeout_seconds", "max_retries", "day_of_month")
CRON_PRESETS = (
    ("*/5 * * * *", "every 5 minutes"),
    ("0 * * * *", "every hour"),
    ("0 9 * * 1-5", "weekdays at 09:00"),
    *((expr, macro) for macro, expr in CRON_MACROS.items() if macro not in ("@annually", "@midnight")),
)


def _flags(form: dict[str, str]) -> dict[str, Any]:
    """The form as the CLI's schedule options: blank means not given; only the chosen kind's timing."""
    kind = form.get("kind", "").strip()
    if kind not in KINDS:
        raise InvalidInput(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    flags: dict[str, Any] = {"kind": kind}
    for key in (*FORM_COMMON, *FORM_KIND_FIELDS[kind], *FORM_NUMBERS):
        value = form.get(key, "").strip()
        if not value or (key == "day_of_month" and kind != "monthly"):
            continue
        if key in FORM_NUMBERS:
            try:
                flags[key] = int(value)
            except ValueError:
                raise InvalidInput(f"{key}: not a whole number: {value!r}") from None
        else:
            flags[key] = value
    return flags


def _form_of(row: dict[str, Any]) -> dict[str, str]:
    """A schedule row as the form's text, to edit it."""
    tz = row["timezone"]

    def when(value: datetime | None) -> str:
        return local(value, tz) if value else ""

    interval = row.get("interval_seconds")
    return {
        "name": row["name"],
        "job_type": row["job_type"],
        "kind": row["kind"],
        "run_at": when(row.get("run_at")),
        "every": f"{interval}s" if interval else "",
        "at": row["time_of_day"].strftime("%H:%M:%S") if row.get("time_of_day") else "",
        "weekdays": ",".join(WEEKDAY_NAMES[d] for d in row.get("weekdays") or ()),
        "day_of_month": str(row["day_of_month"]) if row.get("day_of_month") else "",
        "cron_expression": row.get("cron_expression") or "",
        "timezone": tz,
        "start": when(row.get("start_at")),
        "end": when(row.get("end_at")),
        "max_executions": str(row["max_executions"]) if row.get("max_executions") else "",
        "user_id": row.get("user_id") or "",
        "priority": str(row.get("priority") or ""),
        "timeout_seconds": str(row["timeout_seconds"]) if row.get("timeout_seconds") else "",
        "max_retries": str(row["max_retries"]) if row.get("max_retries") is not None else "",
        "metadata": json.dumps(row["metadata"]) if row.get("metadata") else "",
    }


async def _form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _form_page(
    request: Request,
    viewer: Viewer,
    form: dict[str, str],
    *,
    schedule: dict[str, Any] | None = None,
    preview: list[str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "schedule_form.html",
        viewer,
        status_code,
        form=form,
        schedule=schedule,
        preview=preview,
        error=error,
        kinds=KINDS,
        presets=CRON_PRESETS,
    )


@schedule_pages.get("/schedules")
def schedules_page(request: Request) -> HTMLResponse:
    viewer = logged_in(request)
    with _db(request) as conn:
        found = manage.list_all(conn)
    return render(request, "schedules.html", viewer, schedules=found)


@schedule_pages.get("/schedules/new")
def schedule_new(request: Request) -> HTMLResponse:
    viewer = logged_in(request)
    return _form_page(request, viewer, {"kind": "daily", "timezone": "UTC"})


@schedule_pages.post("/schedules/new")
async def schedule_create(request: Request) -> Response:
    """Preview (intent=preview) or create (intent=save) a schedule from the form."""
    form = await _form(request)
    viewer = acting(request, form.get("csrf", ""))
    name = form.get("name", "").strip()

    def check() -> dict[str, Any]:
        return manage.new_definition(name, _flags(form))

    fields, error, code = attempt(check)
    if fields is None:
        return _form_page(request, viewer, form, error=error, status_code=code)
    if form.get("intent") == "preview":
        return _preview(request, viewer, form, fields, None)

    def add() -> manage.Saved:
        assert fields is not None
        with _db(request) as conn:
            return manage.add(conn, name, fields, paused=form.get("paused") == "on")

    saved, error, code = attempt(add)
    if saved is None:
        return _form_page(request, viewer, form, error=error, status_code=code)
    return RedirectResponse(f"/schedules/{saved.schedule_id}", status_code=303)


def _preview(
    request: Request,
    viewer: Viewer,
    form: dict[str, str],
    fields: dict[str, Any],
    schedule: dict[str, Any] | None,
) -> HTMLResponse:
    with _db(request) as conn:
        now = store.schedule_db_now(conn)
    count = schedule["execution_count"] if schedule else 0
    runs = manage.upcoming(fields, now, PREVIEW_COUNT, count)
    shown = [local(r, fields["timezone"]) for r in runs] or ["never: no occurrence is left"]
    return _form_page(request, viewer, form, schedule=schedule, preview=shown)


@schedule_pages.get("/schedules/{key}")
def schedule_page(request: Request, key: str) -> HTMLResponse:
    viewer = logged_in(request)

    def shown() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, int]]:
        with _db(request) as conn:
            return manage.show(conn, key, 50)

    found, error, code = attempt(shown)
    if found is None:
        return refused(request, viewer, error or "", code, "/schedules")
    row, executions, tally = found
    return render(
        request,
        "schedule.html",
        viewer,
        schedule=row,
        executions=executions,
        tally=tally,
        next_local=local(row["next_run_at"], row["timezone"]) if row["next_run_at"] else None,
    )


@schedule_pages.get("/schedules/{key}/edit")
def schedule_edit(request: Request, key: str) -> HTMLResponse:
    viewer = logged_in(request)

    def shown() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, int]]:
        with _db(request) as conn:
            return manage.show(conn, key, 1)

    found, error, code = attempt(shown)
    if found is None:
        return refused(request, viewer, error or "", code, "/schedules")
    return _form_page(request, viewer, _form_of(found[0]), schedule=found[0])


@schedule_pages.post("/schedules/{key}/{action}")
async def schedule_action(request: Request, key: str, action: str) -> Response:
    """edit (preview or save), pause, resume or delete a schedule."""
    form = await _form(request)
    viewer = acting(request, form.get("csrf", ""))
    if action == "edit":
        return _edit(request, viewer, key, form)
    actions: dict[str, Callable[[Any], object]] = {
        "pause": lambda conn: manage.set_enabled(conn, key, False),
        "resume": lambda conn: manage.set_enabled(conn, key, True),
        "delete": lambda conn: manage.remove(conn, key),
    }
    if action not in actions:
        return refused(request, viewer, f"no action {action!r}", 404, "/schedules")

    def act() -> object:
        with _db(request) as conn:
            return actions[action](conn)

    done, error, code = attempt(act)
    if done is None:
        return refused(request, viewer, error or "", code, f"/schedules/{key}")
    return RedirectResponse("/schedules" if action == "delete" else f"/schedules/{key}", status_code=303)


def _edit(request: Request, viewer: Viewer, key: str, form: dict[str, str]) -> Response:
    def current() -> dict[str, Any]:
        with _db(request) as conn:
            return manage.show(conn, key, 1)[0]

    row, error, code = attempt(current)
    if row is None:
        return refused(request, viewer, error or "", code, "/schedules")
    form = {**form, "name": row["name"]}

    def check() -> dict[str, Any]:
        return manage.changed_definition(row, _flags(form))

    fields, error, code = attempt(check)
    if fields is None:
        return _form_page(request, viewer, form, schedule=row, error=error, status_code=code)
    if form.get("intent") == "preview":
        return _preview(request, viewer, form, fields, row)

    def save() -> manage.Saved:
        with _db(request) as conn:
            return manage.update(conn, key, _flags(form))

    saved, error, code = attempt(save)
    if saved is None:
        return _form_page(request, viewer, form, schedule=row, error=error, status_code=code)
    return RedirectResponse(f"/schedules/{saved.schedule_id}", status_code=303)
