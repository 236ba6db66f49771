"""API tokens of the web surface (sql/tokens.sql)."""

from __future__ import annotations

from typing import Any

from jobcron.db import Connection
from jobcron.store import _all, _one

__all__ = ["token_check", "token_insert", "token_list", "token_revoke"]


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
