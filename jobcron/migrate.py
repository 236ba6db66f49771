"""Numbered SQL migrations, applied in order under an advisory lock and recorded in a ledger."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from jobcron import store
from jobcron.db import Connection, current_schema
from jobcron.errors import ConfigError, MigrationError, SchemaOutOfDate
from jobcron.sql import MIGRATIONS_DIR

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One forward-only migration file."""

    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file, so an edited migration is noticed."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Migration files shipped with jobcron, in version order."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"migration file name not of the form NNNN_name.sql: {path.name}")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must run 1..N without gaps, found {versions}")
    return found


@dataclass(frozen=True)
class SchemaState:
    """Which migrations a database has and lacks."""

    applied: list[int]
    pending: list[Migration]
    unknown: list[int]

    @property
    def current(self) -> bool:
        """True when nothing is pending and nothing unknown is applied."""
        return not self.pending and not self.unknown


def state(conn: Connection, migrations: list[Migration] | None = None) -> SchemaState:
    """Compare the ledger with the shipped migrations, checking checksums of applied ones."""
    migrations = available() if migrations is None else migrations
    applied_rows = store.ledger_versions(conn) if store.ledger_exists(conn) else []
    by_version = {m.version: m for m in migrations}
    for row in applied_rows:
        shipped = by_version.get(row["version"])
        if shipped is not None and shipped.checksum != row["checksum"]:
            raise MigrationError(
                f"migration {row['version']:04d}_{row['name']} was changed after it was applied "
                "(checksum differs); migrations are forward-only: add a new one instead"
            )
    applied = [r["version"] for r in applied_rows]
    pending = [m for m in migrations if m.version not in applied]
    unknown = [v for v in applied if v not in by_version]
    return SchemaState(applied, pending, unknown)


def migrate(conn: Connection) -> list[Migration]:
    """Apply pending migrations, each in its own transaction, under the migrators' advisory lock."""
    if current_schema(conn) is None:
        raise ConfigError(
            "no schema to install into: the session's search_path (the URL's options=, PGOPTIONS or the "
            "role's setting) names none that exists; create it (CREATE SCHEMA ...) or set "
            "database.schema, which `migrate` creates"
        )
    store.migration_lock(conn)
    try:
        store.ledger_create(conn)
        # read the ledger only after taking the lock: a migrator that waited sees what the other applied
        todo = state(conn).pending
        for migration in todo:
            with conn.transaction():
                store.execute_script(conn, migration.text)
                store.ledger_record(conn, migration.version, migration.name, migration.checksum)
        return todo
    finally:
        store.migration_unlock(conn)


def ensure_schema(conn: Connection, schema: str) -> None:
    """Create database.schema when it is missing; refuse to migrate anywhere else."""
    store.schema_create(conn, schema)
    found = current_schema(conn)
    if found != schema:
        raise ConfigError(
            f"database.schema: {schema!r}, but this session's search_path puts new tables in {found!r}; "
            f"with database.prepared_statements false, set it on the role: ALTER ROLE ... SET search_path = {schema}"
        )


def check(conn: Connection) -> SchemaState:
    """Raise SchemaOutOfDate unless the database has exactly the shipped migrations."""
    current = state(conn)
    if current.unknown:
        raise SchemaOutOfDate(
            f"database has migrations this jobcron does not know ({current.unknown}); upgrade jobcron"
        )
    if current.pending:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in current.pending)
        where = current_schema(conn)
        raise SchemaOutOfDate(
            f"database schema is out of date: pending {names} (looked in schema {where!r}: "
            "database.schema or the search_path choose it); run `job_cron migrate`"
        )
    return current


def pending_sql(conn: Connection | None) -> str:
    """The SQL that `migrate` would run (all of it without a connection)."""
    todo = available() if conn is None else state(conn).pending
    return "\n".join(f"-- {m.version:04d}_{m.name}.sql\n{m.text}" for m in todo)
