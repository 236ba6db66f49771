"""Roles made by deploy/sql/roles.sql under unique names (roles are cluster-wide), and login roles in them."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROLES_SQL = Path(__file__).resolve().parents[1] / "deploy" / "sql" / "roles.sql"


class Roles:
    """Group roles made by roles.sql (unique names: roles are cluster-wide) and login roles in them."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        tag = uuid.uuid4().hex[:8]
        self.names = {"worker": f"jc_worker_{tag}", "enqueuer": f"jc_enqueuer_{tag}"}
        self.logins: list[str] = []

    def apply(self, *variables: str) -> None:
        """Run roles.sql for these roles, with more psql variables (e.g. row_security=on)."""
        args = [a for kind, name in self.names.items() for a in ("-v", f"{kind}_role={name}")]
        args += [a for v in variables for a in ("-v", v)]
        done = subprocess.run(
            ["psql", self.dsn, "-X", "-q", "-f", str(ROLES_SQL), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def login(self, kind: str, suffix: str = "login") -> str:
        """A new login role in the group role of this kind; its conninfo."""
        login = f"{self.names[kind]}_{suffix}"
        with psycopg.connect(self.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
            admin.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(self.names[kind]), sql.Identifier(login))
            )
        self.logins.append(login)
        return make_conninfo(self.dsn, user=login)

    def drop(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as admin:
            for role in [*self.logins, *self.names.values()]:
                exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                if exists:
                    admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
