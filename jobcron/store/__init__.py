"""The only package that executes runtime SQL: one module per `.sql` file, one function per named query.

This module holds what they share (running a named query, inside `jobcron.store.translate`, so that a
row the schema refuses raises a `jobcron.errors.StoreError`) and re-exports every public name, so
callers keep writing `store.claim(conn, ...)`. Rows are read as dicts whatever the connection's own
row factory is (commands may get an application's connection), and nothing here commits on the
caller's behalf.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.rows import dict_row

from jobcron.sql import sql
from jobcron.store.translate import translate

_TIMESTAMPTZ_OID = psycopg.postgres.types["timestamptz"].oid


class _TimestamptzOrText(Loader):
    """A timestamptz as a datetime, or as PostgreSQL's own text when Python cannot hold it.

    Another application may write 'infinity', '-infinity' or year 10000 into any time column; the
    operator commands show such a value as it is instead of failing on the whole row set.
    """

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        loader = psycopg.adapters.get_loader(_TIMESTAMPTZ_OID, Format.TEXT)
        assert loader is not None
        self._datetime = loader(oid, context)

    def load(self, data: Buffer) -> Any:
        try:
            return self._datetime.load(data)
        except psycopg.DataError:
            return bytes(data).decode()


def _cursor(conn: psycopg.Connection[Any], *, lenient_times: bool = False) -> psycopg.Cursor[dict[str, Any]]:
    """A dict-row cursor; lenient_times: a time Python cannot hold comes as text (operator reads)."""
    cur = conn.cursor(row_factory=dict_row)
    if lenient_times:
        cur.adapters.register_loader(_TIMESTAMPTZ_OID, _TimestamptzOrText)
    return cur


def _one(
    conn: psycopg.Connection[Any],
    name: str,
    params: dict[str, Any] | None = None,
    *,
    lenient_times: bool = False,
) -> dict[str, Any] | None:
    with translate(), _cursor(conn, lenient_times=lenient_times) as cur:
        cur.execute(sql(name), params or {})
        return cur.fetchone()


def _all(
    conn: psycopg.Connection[Any],
    name: str,
    params: dict[str, Any] | None = None,
    *,
    lenient_times: bool = False,
) -> list[dict[str, Any]]:
    with translate(), _cursor(conn, lenient_times=lenient_times) as cur:
        cur.execute(sql(name), params or {})
        return cur.fetchall()


def _exec(conn: psycopg.Connection[Any], name: str, params: dict[str, Any] | None = None) -> int:
    with translate(), _cursor(conn) as cur:
        cur.execute(sql(name), params or {})
        return cur.rowcount


# The modules import the helpers above from this package, so they are imported after them.
from jobcron.store.admin import *  # noqa: E402, F403
from jobcron.store.demo import *  # noqa: E402, F403
from jobcron.store.enqueue import *  # noqa: E402, F403
from jobcron.store.jobs import *  # noqa: E402, F403
from jobcron.store.ledger import *  # noqa: E402, F403
from jobcron.store.results import *  # noqa: E402, F403
from jobcron.store.schedules import *  # noqa: E402, F403
from jobcron.store.tokens import *  # noqa: E402, F403
from jobcron.store.webhooks import *  # noqa: E402, F403
from jobcron.store.workers import *  # noqa: E402, F403
