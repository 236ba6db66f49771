"""The dashboard's sessions and what every page shares: login, logout, CSRF, rendering, errors.

A login form exchanges a token for a session: a random secret in a cookie (HttpOnly,
SameSite=Strict, Secure behind TLS), stored hashed in jobcron_sessions for 12 hours. Logging out
deletes it; revoking the token ends every session made from it at once. The browser never keeps the
token. Every form carries a CSRF value derived from the session secret (an HMAC no other site can
compute), checked on every POST. Jinja2 escapes every value; the Content-Security-Policy allows scripts, styles and
connections from this origin only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from jobcron.admin import tokens as admin_tokens
from jobcron.db import scrub
from jobcron.errors import InvalidInput, JobCronError, JobNotFound, ScheduleNotFound
from jobcron.web.state import _db, _web

COOKIE = "jobcron_session"
HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
session = APIRouter(include_in_schema=False)
LOGIN_CSRF = "login"
T = TypeVar("T")


class Viewer:
    """A logged-in session: the token's {name, role} and the session secret (for the forms' CSRF value)."""

    def __init__(self, who: dict[str, Any], secret: str) -> None:
        self.who = who
        self.token = secret

    @property
    def by(self) -> str:
        """Who acted, for a job's history."""
        return f"web:{self.who['name']}"


def csrf_for(secret: str) -> str:
    """The value every form of this session must send back."""
    return hmac.new(admin_tokens.digest(secret), b"jobcron-csrf", hashlib.sha256).hexdigest()


def cookie_identity(request: Request) -> dict[str, Any] | None:
    """{name, role} of this request's session cookie, or None."""
    secret = request.cookies.get(COOKIE, "")
    if not secret:
        return None
    with _db(request) as conn:
        return admin_tokens.session_identity(conn, secret)


def logged_in(request: Request) -> Viewer:
    """The session of this request; a redirect to /login without one."""
    who = cookie_identity(request)
    if who is None:
        raise HTTPException(303, headers={"Location": "/login"})
    return Viewer(who, request.cookies[COOKIE])


def acting(request: Request, csrf: str) -> Viewer:
    """The session of a form that acts: its CSRF value must match, and its token be an admin's."""
    viewer = logged_in(request)
    if not hmac.compare_digest(csrf, csrf_for(viewer.token)):
        raise HTTPException(403, "the form's CSRF value does not match this session: reload the page")
    if viewer.who["role"] != "admin":
        raise HTTPException(403, f"token {viewer.who['name']!r} is a viewer: this needs an admin token")
    return viewer


def render(
    request: Request, name: str, viewer: Viewer | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page of templates/, with the session's name, role and CSRF value."""
    return templates.TemplateResponse(
        request,
        name,
        {
            "who": viewer.who if viewer else None,
            "csrf": csrf_for(viewer.token) if viewer else LOGIN_CSRF,
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
    )


def attempt(call: Callable[[], T]) -> tuple[T | None, str | None, int]:
    """Run an operation for a page: (its result, None, 200), or (None, the CLI's message, the HTTP status)."""
    try:
        return call(), None, 200
    except InvalidInput as exc:
        return None, str(exc), 422
    except JobCronError as exc:
        return None, str(exc), 404 if isinstance(exc, JobNotFound | ScheduleNotFound) else 409


def refused(request: Request, viewer: Viewer, message: str, status_code: int, back: str) -> HTMLResponse:
    """An action the CLI's rules refused: its message, and the way back."""
    text = scrub(message, _web(request).dsn)
    return render(request, "refused.html", viewer, status_code, message=text, back=back)


@session.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", None)


@session.post("/login")
def login(request: Request, token: Annotated[str, Form()], csrf: Annotated[str, Form()] = "") -> Response:
    if csrf != LOGIN_CSRF or request.headers.get("sec-fetch-site", "same-origin") not in (
        "same-origin",
        "none",
    ):
        raise HTTPException(403, "login must come from this site's own form")
    with _db(request) as conn:
        secret = admin_tokens.open_session(conn, token.strip())
    if secret is None:
        return render(request, "login.html", None, 401, error="unknown or revoked token")
    answer = RedirectResponse("/", status_code=303)
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    answer.set_cookie(
        COOKIE,
        secret,
        max_age=admin_tokens.SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    return answer


@session.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    viewer = logged_in(request)
    if not hmac.compare_digest(csrf, csrf_for(viewer.token)):
        raise HTTPException(403, "the form's CSRF value does not match this session: reload the page")
    with _db(request) as conn:
        admin_tokens.close_session(conn, viewer.token)
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/")
    return answer
