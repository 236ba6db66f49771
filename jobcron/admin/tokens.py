"""API tokens for the web surface: made by `job_cron tokens create`, checked by `job_cron web`.

A token is `jc_` and 43 URL-safe characters (256 random bits). Only its SHA-256 is stored, so the
table leaks nothing usable; a hash of a high-entropy secret needs no salt or slow function.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from jobcron import store
from jobcron.db import Connection
from jobcron.errors import DuplicateKey, InvalidInput, JobCronError

ROLES = ("viewer", "admin")
PREFIX = "jc_"
SESSION_PREFIX = "js_"
SESSION_SECONDS = 12 * 3600  # a dashboard login lasts 12 hours
_NAME = re.compile(r"[\w.@-]{1,100}")


def digest(token: str) -> bytes:
    """What is stored and looked up for a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def create(conn: Connection, name: str, role: str) -> tuple[dict[str, Any], str]:
    """A new token for name with role: (its row, the token itself, to be shown once)."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"name: {name[:120]!r} is not a token name (letters, digits, _ . @ -; 1-100)")
    if role not in ROLES:
        raise InvalidInput(f"role: must be one of {', '.join(ROLES)}, got {role!r}")
    token = PREFIX + secrets.token_urlsafe(32)
    try:
        with conn.transaction():
            row = store.token_insert(conn, name, role, digest(token))
    except DuplicateKey:
        raise JobCronError(
            f"a live token named {name!r} exists: revoke it first (job_cron tokens revoke {name})"
        ) from None
    return row, token


def revoke(conn: Connection, name: str) -> dict[str, Any]:
    """Revoke the live token of this name."""
    row = store.token_revoke(conn, name)
    if row is None:
        raise JobCronError(f"no live token named {name!r}")
    return row


def identify(conn: Connection, token: str) -> dict[str, Any] | None:
    """{name, role} of a live token, or None (unknown, revoked, or not a token at all)."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    return store.token_check(conn, digest(token))


def open_session(conn: Connection, token: str, seconds: float = SESSION_SECONDS) -> str | None:
    """Exchange a live token for a new session secret (for a cookie), or None for a bad token."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    secret = SESSION_PREFIX + secrets.token_urlsafe(32)
    made = store.session_insert(conn, digest(secret), digest(token), seconds)
    return None if made is None else secret


def session_identity(conn: Connection, secret: str) -> dict[str, Any] | None:
    """{name, role} behind a live session of a live token, or None (expired, logged out, revoked)."""
    if not secret.startswith(SESSION_PREFIX) or len(secret) > 200:
        return None
    return store.session_check(conn, digest(secret))


def close_session(conn: Connection, secret: str) -> None:
    """Log out: the session secret stops working at once."""
    store.session_delete(conn, digest(secret))


def list_all(conn: Connection) -> list[dict[str, Any]]:
    """Every token, live ones first (never a token or its hash)."""
    return store.token_list(conn)
