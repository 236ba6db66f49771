"""Which connection an application passed: `jobcron` takes a psycopg 3 `Connection`, `jobcron.aio` an
`AsyncConnection`. Anything else (psycopg2, asyncpg, a SQLAlchemy object, a URL) gets one error
that says what was given and what to pass instead, before any SQL is sent.
"""

from __future__ import annotations

from typing import Any

import psycopg

from jobcron.errors import WrongConnection

_SQLALCHEMY_HINT = (
    "with SQLAlchemy on the psycopg dialect (postgresql+psycopg://), pass "
    "session.connection().connection.driver_connection"
)


def _name(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _hint(obj: Any, wanted: str) -> str:
    module = type(obj).__module__.split(".")[0]
    if isinstance(obj, str):
        return f"a connection, not a URL: open one with {wanted}(url)"
    if module == "psycopg2":
        return f"psycopg2 connections are not supported: open a psycopg 3 one with {wanted}(dsn)"
    if module == "asyncpg":
        return f"asyncpg connections are not supported: open a psycopg 3 one with {wanted}(dsn)"
    if module == "sqlalchemy":
        return _SQLALCHEMY_HINT + (
            "" if wanted == "psycopg.connect" else " (a psycopg AsyncConnection with an async engine)"
        )
    if module == "django":
        return "with Django's psycopg 3 backend, pass django.db.connection.connection (after ensure_connection())"
    return f"open one with {wanted}(dsn)"


def require_sync(conn: Any, api: str) -> psycopg.Connection[Any]:
    """conn, when it is a psycopg 3 Connection; WrongConnection naming what to pass otherwise."""
    if isinstance(conn, psycopg.Connection):
        return conn
    if isinstance(conn, psycopg.AsyncConnection):
        raise WrongConnection(
            f"{api} needs a psycopg.Connection; got an AsyncConnection: use jobcron.aio.{api.split('.')[-1]} "
            "(awaited) for asyncio code"
        )
    raise WrongConnection(
        f"{api} needs a psycopg 3 connection (psycopg.Connection); got {_name(conn)}: "
        + _hint(conn, "psycopg.connect")
    )


def require_async(conn: Any, api: str) -> psycopg.AsyncConnection[Any]:
    """conn, when it is a psycopg 3 AsyncConnection; WrongConnection naming what to pass otherwise."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    if isinstance(conn, psycopg.Connection):
        raise WrongConnection(
            f"{api} needs a psycopg.AsyncConnection; got a sync psycopg.Connection: use "
            f"jobcron.{api.split('.')[-1]} for it, or open one with await psycopg.AsyncConnection.connect(dsn)"
        )
    raise WrongConnection(
        f"{api} needs a psycopg 3 AsyncConnection; got {_name(conn)}: "
        + _hint(conn, "await psycopg.AsyncConnection.connect")
    )
