"""The migrations ledger and the migrators' lock (sql/ledger.sql)."""

from __future__ import annotations

from typing import Any

from psycopg import sql as pgsql

from jobcron.db import Connection
from jobcron.store import _all, _exec, _one

__all__ = [
    "execute_script",
    "ledger_create",
    "ledger_exists",
    "ledger_record",
    "ledger_versions",
    "migration_lock",
    "migration_unlock",
    "schema_create",
]


def ledger_exists(conn: Connection) -> bool:
    """Whether the migrations ledger table exists."""
    row = _one(conn, "ledger_exists")
    return bool(row and row["present"])


def ledger_create(conn: Connection) -> None:
    """Create the ledger if missing."""
    _exec(conn, "ledger_create")


def ledger_versions(conn: Connection) -> list[dict[str, Any]]:
    """Applied migrations, oldest first."""
    return _all(conn, "ledger_versions")


def ledger_record(conn: Connection, version: int, name: str, checksum: str) -> None:
    """Record an applied migration."""
    _exec(conn, "ledger_record", {"version": version, "name": name, "checksum": checksum})


def migration_lock(conn: Connection) -> None:
    """Take the migrators' advisory lock (blocks until free)."""
    _exec(conn, "migration_lock")


def migration_unlock(conn: Connection) -> None:
    """Release the migrators' advisory lock."""
    _exec(conn, "migration_unlock")


def execute_script(conn: Connection, text: str) -> None:
    """Run a migration file (trusted SQL shipped with jobcron, no parameters)."""
    conn.execute(text.encode("utf-8"))


def schema_create(conn: Connection, schema: str) -> None:
    """CREATE SCHEMA IF NOT EXISTS, for database.schema (the name quoted as an identifier)."""
    conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(schema)))
