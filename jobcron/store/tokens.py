"""API tokens of the web surface (sql/tokens.sql)."""

from __future__ import annotations

from typing import Any

from jobcron.db import Connection
from jobcron.store import _all, _exec, _one

__all__ = [
    "session_check",
    "session_delete",
    "session_insert",
    "token_check",
    "token_insert",
    "token_list",
    "token_revoke",
]


def token_insert(conn: Connection, name: str, role: str, token_sha256: bytes) -> dict[str, Any]:
    """Store a new token's hash; the row without it."""
    row = _one(conn, "token_insert", {"name": name, "role": role, "token_sha256": token_sha256})
    assert row is not None
    return row


def token_list(conn: Connection) -> list[dict[str, Any]]:
    """Every token (never its hash)."""
    return _all(conn, "token_list")


def token_revoke(conn: Connection, name: str) -> dict[str, Any] | None:
    """Revoke the live token of this name; None when there is none."""
    return _one(conn, "token_revoke", {"name": name})


def token_check(conn: Connection, token_sha256: bytes) -> dict[str, Any] | None:
    """The live token with this hash ({name, role}), or None."""
    return _one(conn, "token_check", {"token_sha256": token_sha256})


def session_insert(
    conn: Connection, session_sha256: bytes, token_sha256: bytes, seconds: float
) -> dict[str, Any] | None:
    """A session for a live token ({expires_at}), or None when the token is unknown or revoked."""
    params = {"session_sha256": session_sha256, "token_sha256": token_sha256, "seconds": float(seconds)}
    return _one(conn, "session_insert", params)


def session_check(conn: Connection, session_sha256: bytes) -> dict[str, Any] | None:
    """{name, role} behind a live session of a live token, or None."""
    return _one(conn, "session_check", {"session_sha256": session_sha256})


def session_delete(conn: Connection, session_sha256: bytes) -> None:
    """End a session."""
    _exec(conn, "session_delete", {"session_sha256": session_sha256})
