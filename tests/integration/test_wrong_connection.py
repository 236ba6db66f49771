"""Every entry point given the wrong kind of connection: one WrongConnection saying what to pass instead.

With the real objects (psycopg2, asyncpg, SQLAlchemy sync and asyncio), and, where the message says
what to pass, that passing it works.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import jobcron
import jobcron.aio
from jobcron.errors import JobCronError, WrongConnection
from jobcron.results import Waiter

NO_JOB = "00000000-0000-0000-0000-000000000000"

SYNC: dict[str, Callable[[Any], Any]] = {
    "jobcron.enqueue": lambda c: jobcron.enqueue(c, "noop"),
    "jobcron.enqueue_many": lambda c: jobcron.enqueue_many(c, [{"job_type": "noop"}]),
    "jobcron.get_job": lambda c: jobcron.get_job(c, NO_JOB),
    "jobcron.wait": lambda c: jobcron.wait(c, NO_JOB, timeout=1),
    "jobcron.results.Waiter": Waiter,
}
ASYNC: dict[str, Callable[[Any], Awaitable[Any]]] = {
    "jobcron.aio.enqueue": lambda c: jobcron.aio.enqueue(c, "noop"),
    "jobcron.aio.enqueue_many": lambda c: jobcron.aio.enqueue_many(c, [{"job_type": "noop"}]),
    "jobcron.aio.get_job": lambda c: jobcron.aio.get_job(c, NO_JOB),
    "jobcron.aio.wait": lambda c: jobcron.aio.wait(c, NO_JOB, timeout=1),
    "jobcron.aio.AsyncWaiter": lambda c: _construct(jobcron.aio.AsyncWaiter, c),
}


async def _construct(cls: Any, conn: Any) -> Any:
    return cls(conn)


def sync_errors(conn: Any) -> dict[str, str]:
    """The message each sync entry point gives for conn."""
    said = {}
    for api, call in SYNC.items():
        with pytest.raises(WrongConnection) as caught:
            call(conn)
        said[api] = str(caught.value)
    return said


async def async_errors(conn: Any) -> dict[str, str]:
    """The message each jobcron.aio entry point gives for conn."""
    said = {}
    for api, call in ASYNC.items():
        with pytest.raises(WrongConnection) as caught:
            await call(conn)
        said[api] = str(caught.value)
    return said


def sqlalchemy_url(dsn: str, driver: str = "psycopg") -> Any:
    sqlalchemy = pytest.importorskip("sqlalchemy", reason="the test extra installs SQLAlchemy 2")
    p = conninfo_to_dict(dsn)
    return sqlalchemy.URL.create(
        f"postgresql+{driver}",
        username=p.get("user"),
        password=p.get("password"),
        host=p.get("host"),
        port=int(p["port"]) if p.get("port") else None,
        database=p.get("dbname"),
    )


def test_the_error_is_a_type_error_and_a_jobcron_error() -> None:
    assert issubclass(WrongConnection, TypeError) and issubclass(WrongConnection, JobCronError)


def test_a_connection_string_or_a_cursor(dsn: str) -> None:
    for api, message in sync_errors(dsn).items():
        assert message == (
            f"{api} needs a psycopg 3 connection (psycopg.Connection); got builtins.str: "
            "a connection, not a connection string: open one with psycopg.connect(dsn)"
        )
    for api, message in asyncio.run(async_errors(dsn)).items():
        assert message.startswith(f"{api} needs a psycopg 3 AsyncConnection (psycopg.AsyncConnection)")
        assert message.endswith("open one with await psycopg.AsyncConnection.connect(dsn)")
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        assert sync_errors(cur)["jobcron.enqueue"].endswith(
            "got psycopg.Cursor: a connection, not a cursor: pass cursor.connection"
        )
        conn.rollback()


def test_the_other_kind_of_psycopg_connection(dsn: str) -> None:
    with psycopg.connect(dsn) as sync_conn:
        said = asyncio.run(async_errors(sync_conn))
    assert said["jobcron.aio.enqueue"] == (
        "jobcron.aio.enqueue needs a psycopg 3 AsyncConnection (psycopg.AsyncConnection); got a sync "
        "psycopg.Connection: use jobcron.enqueue with it, or open one with "
        "await psycopg.AsyncConnection.connect(dsn)"
    )
    assert "use jobcron.results.Waiter with it" in said["jobcron.aio.AsyncWaiter"]

    async def with_async() -> dict[str, str]:
        async with await psycopg.AsyncConnection.connect(dsn) as c:
            return sync_errors(c)

    said = asyncio.run(with_async())
    for api, message in said.items():
        assert message.startswith(
            f"{api} needs a psycopg 3 connection (psycopg.Connection); got a psycopg.AsyncConnection"
        )
    assert said["jobcron.wait"].endswith("in asyncio code use jobcron.aio.wait (awaited)")
    assert said["jobcron.results.Waiter"].endswith("use jobcron.aio.AsyncWaiter (awaited)")


def test_psycopg2_and_asyncpg(dsn: str) -> None:
    psycopg2 = pytest.importorskip("psycopg2", reason="the test extra installs psycopg2-binary")
    legacy = psycopg2.connect(dsn)
    try:
        said = sync_errors(legacy)
        said_async = asyncio.run(async_errors(legacy))
    finally:
        legacy.close()
    assert said["jobcron.enqueue"] == (
        "jobcron.enqueue needs a psycopg 3 connection (psycopg.Connection); got "
        "psycopg2.extensions.connection: psycopg2 is not supported: open a psycopg 3 connection with "
        "psycopg.connect(dsn), or with SQLAlchemy's psycopg dialect (postgresql+psycopg://) pass "
        "session.connection().connection.driver_connection"
    )
    assert "await psycopg.AsyncConnection.connect(dsn)" in said_async["jobcron.aio.wait"]

    asyncpg = pytest.importorskip("asyncpg", reason="the test extra installs asyncpg")

    async def with_asyncpg() -> tuple[dict[str, str], dict[str, str]]:
        p = conninfo_to_dict(dsn)
        other = await asyncpg.connect(
            host=p.get("host"),
            port=p.get("port"),
            user=p.get("user"),
            password=p.get("password"),
            database=p.get("dbname"),
        )
        try:
            return sync_errors(other), await async_errors(other)
        finally:
            await other.close()

    said, said_async = asyncio.run(with_asyncpg())
    assert said_async["jobcron.aio.enqueue"] == (
        "jobcron.aio.enqueue needs a psycopg 3 AsyncConnection (psycopg.AsyncConnection); got "
        "asyncpg.connection.Connection: asyncpg is not supported: open a psycopg 3 connection with "
        "await psycopg.AsyncConnection.connect(dsn), or with SQLAlchemy's psycopg dialect "
        "(postgresql+psycopg://) pass (await (await session.connection()).get_raw_connection()).driver_connection"
    )
    assert "asyncpg is not supported" in said["jobcron.get_job"]


def test_sqlalchemy_sync_objects_and_what_the_message_says_works(dsn: str) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy", reason="the test extra installs SQLAlchemy 2")
    from sqlalchemy.orm import Session

    engine = sqlalchemy.create_engine(sqlalchemy_url(dsn))
    try:
        with Session(engine) as session, engine.connect() as connection:
            expected = {
                session: "session.connection().connection.driver_connection",
                connection: "conn.connection.driver_connection",
                engine: "c.connection.driver_connection inside `with engine.connect() as c:`",
                connection.connection: "its .driver_connection",
            }
            for given, hint in expected.items():
                message = sync_errors(given)["jobcron.enqueue"]
                assert message == (
                    "jobcron.enqueue needs a psycopg 3 connection (psycopg.Connection); got "
                    f"{type(given).__module__}.{type(given).__qualname__}: "
                    f"with SQLAlchemy's psycopg dialect (postgresql+psycopg://), pass {hint}"
                ), message
                if (
                    given is not connection.connection
                ):  # the pool's wrapper: its driver_connection, either way
                    for_aio = asyncio.run(async_errors(given))["jobcron.aio.wait"]
                    assert for_aio.endswith(
                        f"a sync SQLAlchemy object: the sync jobcron API takes its {hint} (on the "
                        "postgresql+psycopg:// dialect); for jobcron.aio use an AsyncSession"
                    ), for_aio
            job_id = jobcron.enqueue(session.connection().connection.driver_connection, "noop")
            session.commit()
            assert jobcron.get_job(connection.connection.driver_connection, job_id).status == "pending"
            connection.rollback()
    finally:
        engine.dispose()


def test_an_application_s_subclass_of_a_sqlalchemy_session_is_recognised(dsn: str) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy", reason="the test extra installs SQLAlchemy 2")
    from sqlalchemy.orm import Session

    class AppSession(Session):
        pass

    engine = sqlalchemy.create_engine(sqlalchemy_url(dsn))
    try:
        with AppSession(engine) as session:
            message = sync_errors(session)["jobcron.get_job"]
    finally:
        engine.dispose()
    assert re.search(
        r"got \S+AppSession: .*pass session\.connection\(\)\.connection\.driver_connection$", message
    )


def test_sqlalchemy_asyncio_objects_and_what_the_message_says_works(dsn: str) -> None:
    pytest.importorskip("sqlalchemy", reason="the test extra installs SQLAlchemy 2")
    pytest.importorskip("greenlet", reason="SQLAlchemy's asyncio API needs greenlet")
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    async def app() -> tuple[dict[Any, tuple[str, str]], str]:
        engine = create_async_engine(sqlalchemy_url(dsn))
        said: dict[Any, tuple[str, str]] = {}
        try:
            async with AsyncSession(engine) as session, engine.connect() as connection:
                for given in (session, connection, engine):
                    said[type(given).__name__] = (
                        (await async_errors(given))["jobcron.aio.enqueue"],
                        sync_errors(given)["jobcron.enqueue"],
                    )
                raw = await (await session.connection()).get_raw_connection()
                job_id = await jobcron.aio.enqueue(raw.driver_connection, "noop")
                await session.commit()
                other = (await connection.get_raw_connection()).driver_connection
                status = (await jobcron.aio.get_job(other, job_id)).status
                await connection.rollback()
        finally:
            await engine.dispose()
        return said, status

    said, status = asyncio.run(app())
    assert status == "pending"
    hints = {
        "AsyncSession": "(await (await session.connection()).get_raw_connection()).driver_connection",
        "AsyncConnection": "(await conn.get_raw_connection()).driver_connection",
        "AsyncEngine": "(await c.get_raw_connection()).driver_connection inside `async with engine.connect() as c:`",
    }
    for name, hint in hints.items():
        for_async, for_sync = said[name]
        assert for_async.endswith(f"with SQLAlchemy's psycopg dialect (postgresql+psycopg://), pass {hint}")
        assert for_sync.endswith(
            f"an asyncio SQLAlchemy object: jobcron.aio takes its {hint} (on the postgresql+psycopg:// dialect)"
        )


def test_nothing_was_sent_to_the_database(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        sync_errors(dsn)
        asyncio.run(async_errors(conn))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM processing_jobs").fetchone() == (0,)
        conn.rollback()
