"""Which connection an application passed: `jobcron` takes a psycopg 3 `Connection`, `jobcron.aio` an
`AsyncConnection`. Anything else (psycopg2, asyncpg, a SQLAlchemy object, a URL, the other kind of
psycopg connection) gets one `WrongConnection` that says what was given and what to pass instead,
before any SQL is sent. Other drivers are recognised by their type's module and name: jobcron never
imports them.
"""

from __future__ import annotations

from typing import Any

import psycopg

from jobcron.errors import WrongConnection

_DIALECT = "with SQLAlchemy's psycopg dialect (postgresql+psycopg://)"
_PSYCOPG = "on the postgresql+psycopg:// dialect"

# SQLAlchemy's objects by class name: (is it asyncio's, how to reach the psycopg connection under it)
_SQLALCHEMY = {
    "Session": (False, "session.connection().connection.driver_connection"),
    "scoped_session": (False, "session.connection().connection.driver_connection"),
    "Connection": (False, "conn.connection.driver_connection"),
    "Engine": (False, "c.connection.driver_connection inside `with engine.connect() as c:`"),
    "AsyncSession": (True, "(await (await session.connection()).get_raw_connection()).driver_connection"),
    "async_scoped_session": (
        True,
        "(await (await session.connection()).get_raw_connection()).driver_connection",
    ),
    "AsyncConnection": (True, "(await conn.get_raw_connection()).driver_connection"),
    "AsyncEngine": (
        True,
        "(await c.get_raw_connection()).driver_connection inside `async with engine.connect() as c:`",
    ),
}
# the pool's wrapper (what `.connection` gives) and the async dialect's adapter hold it as driver_connection
_SQLALCHEMY_WRAPPERS = ("_ConnectionFairy", "AdaptedConnection", "PoolProxiedConnection")


def _name(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _sqlalchemy_hint(obj: Any, want_async: bool) -> str | None:
    """What to pass instead of a SQLAlchemy object (found by its class or a SQLAlchemy base class)."""
    for cls in type(obj).__mro__:
        if not cls.__module__.startswith("sqlalchemy."):
            continue
        if cls.__name__ in _SQLALCHEMY_WRAPPERS:
            return f"{_DIALECT}, pass its .driver_connection"
        if cls.__name__ in _SQLALCHEMY:
            is_async, expression = _SQLALCHEMY[cls.__name__]
            if is_async == want_async:
                return f"{_DIALECT}, pass {expression}"
            if is_async:
                return f"an asyncio SQLAlchemy object: jobcron.aio takes its {expression} ({_PSYCOPG})"
            return (
                f"a sync SQLAlchemy object: the sync jobcron API takes its {expression} ({_PSYCOPG}); "
                "for jobcron.aio use an AsyncSession"
            )
    return None


def _hint(obj: Any, want_async: bool) -> str:
    opener = "await psycopg.AsyncConnection.connect" if want_async else "psycopg.connect"
    module = type(obj).__module__.split(".")[0]
    if isinstance(obj, str | bytes):
        return f"a connection, not a connection string: open one with {opener}(dsn)"
    if isinstance(obj, psycopg.Cursor | psycopg.AsyncCursor):
        return "a connection, not a cursor: pass cursor.connection"
    if module in ("psycopg2", "asyncpg"):
        session = _SQLALCHEMY["AsyncSession" if want_async else "Session"][1]
        return (
            f"{module} is not supported: open a psycopg 3 connection with {opener}(dsn), or "
            f"{_DIALECT} pass {session}"
        )
    found = _sqlalchemy_hint(obj, want_async)
    if found is not None:
        return found
    if module == "django":
        return (
            "with Django's psycopg 3 backend, pass django.db.connection.connection "
            "(after django.db.connection.ensure_connection())"
        )
    return f"open one with {opener}(dsn)"


# the other API's name where it is not the same name in the other module
_COUNTERPARTS = {
    "jobcron.results.Waiter": "jobcron.aio.AsyncWaiter",
    "jobcron.aio.AsyncWaiter": "jobcron.results.Waiter",
    "jobcron.aio.enqueue_one": "jobcron.client.enqueue_one",
}


def _counterpart(api: str) -> str:
    if api in _COUNTERPARTS:
        return _COUNTERPARTS[api]
    name = api.split(".")[-1]
    return f"jobcron.{name}" if api.startswith("jobcron.aio.") else f"jobcron.aio.{name}"


def require_sync(conn: Any, api: str) -> psycopg.Connection[Any]:
    """conn, when it is a psycopg 3 Connection; WrongConnection naming what to pass otherwise."""
    if isinstance(conn, psycopg.Connection):
        return conn
    wanted = f"{api} needs a psycopg 3 connection (psycopg.Connection)"
    if isinstance(conn, psycopg.AsyncConnection):
        raise WrongConnection(
            f"{wanted}; got a psycopg.AsyncConnection: in asyncio code use {_counterpart(api)} (awaited)"
        )
    raise WrongConnection(f"{wanted}; got {_name(conn)}: {_hint(conn, want_async=False)}")


def require_async(conn: Any, api: str) -> psycopg.AsyncConnection[Any]:
    """conn, when it is a psycopg 3 AsyncConnection; WrongConnection naming what to pass otherwise."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    wanted = f"{api} needs a psycopg 3 AsyncConnection (psycopg.AsyncConnection)"
    if isinstance(conn, psycopg.Connection):
        raise WrongConnection(
            f"{wanted}; got a sync psycopg.Connection: use {_counterpart(api)} with it, or open one "
            "with await psycopg.AsyncConnection.connect(dsn)"
        )
    raise WrongConnection(f"{wanted}; got {_name(conn)}: {_hint(conn, want_async=True)}")
