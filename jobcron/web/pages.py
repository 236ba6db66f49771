"""The dashboard: server-rendered pages over the API's functions, readable without JavaScript.

A login form exchanges a token for a session cookie (HttpOnly, SameSite=Strict, Secure behind
TLS) holding the token itself, so revoking the token ends the session at once. Every form carries a
CSRF value derived from the session's token (an HMAC no other site can compute), checked on every
POST. Jinja2 escapes every value; the Content-Security-Policy allows scripts, styles and
connections from this origin only.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from jobcron.admin import jobs as admin_jobs
from jobcron.admin import status as admin_status
from jobcron.admin import tokens as admin_tokens
from jobcron.admin.jobs import STATUSES
from jobcron.web.state import _db, _web

COOKIE = "jobcron_session"  # jobcron.web.app.SESSION_COOKIE
HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
pages = APIRouter(include_in_schema=False)
LOGIN_CSRF = "login"


def csrf_for(token: str) -> str:
    """The value every form of this session must send back."""
    return hmac.new(admin_tokens.digest(token), b"jobcron-csrf", hashlib.sha256).hexdigest()


def _session(request: Request) -> tuple[dict[str, Any], str] | None:
    token = request.cookies.get(COOKIE, "")
    if not token:
        return None
    with _db(request) as conn:
        who = admin_tokens.identify(conn, token)
    return None if who is None else (who, token)


def _page(
    request: Request, name: str, who: dict[str, Any] | None, token: str | None, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"who": who, "csrf": csrf_for(token) if token else LOGIN_CSRF, **context}
    )


def _logged_in(request: Request) -> tuple[dict[str, Any], str]:
    found = _session(request)
    if found is None:
        raise HTTPException(303, headers={"Location": "/login"})
    return found


def _checked(token: str, csrf: str) -> None:
    if not hmac.compare_digest(csrf, csrf_for(token)):
        raise HTTPException(403, "the form's CSRF value does not match this session: reload the page")


@pages.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return _page(request, "login.html", None, None)


@pages.post("/login")
def login(request: Request, token: Annotated[str, Form()], csrf: Annotated[str, Form()] = "") -> Response:
    if csrf != LOGIN_CSRF or request.headers.get("sec-fetch-site", "same-origin") not in (
        "same-origin",
        "none",
    ):
        raise HTTPException(403, "login must come from this site's own form")
    with _db(request) as conn:
        who = admin_tokens.identify(conn, token.strip())
    if who is None:
        return _page(request, "login.html", None, None, error="unknown or revoked token")
    answer = RedirectResponse("/", status_code=303)
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    answer.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", secure=secure, path="/")
    return answer


@pages.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    _, token = _logged_in(request)
    _checked(token, csrf)
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/")
    return answer


@pages.get("/")
def overview(request: Request) -> HTMLResponse:
    who, token = _logged_in(request)
    with _db(request) as conn:
        data = admin_status.collect_status(conn, _web(request).config)
    counts = data["counts"]
    queue = {
        "pending_jobs": counts["pending"],
        "running_jobs": counts["processing"],
        "completed_jobs": counts.get("completed"),
        "failed_jobs": counts.get("failed"),
        "cancelled_jobs": counts.get("cancelled"),
        "oldest_pending_job": data["oldest_pending"],
    }
    return _page(request, "overview.html", who, token, q=queue, status=data)


@pages.get("/jobs")
def jobs_page(request: Request, status: str = "", user: str = "", type: str = "") -> HTMLResponse:
    who, token = _logged_in(request)
    with _db(request) as conn:
        found = admin_jobs.list_jobs(
            conn, statuses=[status] if status else (), user_id=user or None, job_type=type or None, limit=100
        )
    return _page(
        request,
        "jobs.html",
        who,
        token,
        jobs=found,
        statuses=STATUSES,
        status=status,
        user=user,
        job_type=type,
    )


@pages.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> HTMLResponse:
    who, token = _logged_in(request)
    with _db(request) as conn:
        job = admin_jobs.show_job(conn, admin_jobs.job_id_arg(job_id))
    return _page(request, "job.html", who, token, job=job)


@pages.post("/jobs/{job_id}/{action}")
def job_action(request: Request, job_id: str, action: str, csrf: Annotated[str, Form()] = "") -> Response:
    who, token = _logged_in(request)
    _checked(token, csrf)
    if who["role"] != "admin":
        raise HTTPException(403, f"token {who['name']!r} is a viewer: this needs an admin token")
    job_id = admin_jobs.job_id_arg(job_id)
    with _db(request) as conn:
        if action == "cancel":
            admin_jobs.cancel_job(conn, job_id, by=f"web:{who['name']}")
        elif action == "retry":
            admin_jobs.retry_job(conn, job_id, by=f"web:{who['name']}")
        else:
            raise HTTPException(404, f"no action {action!r}")
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)
