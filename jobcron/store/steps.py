"""Database work written once, run on a sync or an async psycopg connection.

A piece of work that both `jobcron` (sync) and `jobcron.aio` (asyncio) do is a generator that yields
steps and receives their results: `One`, `All` (a named query, its row or rows), `Exec` (its row
count), `Copy` (COPY FROM STDIN of the given rows, how many were written) and `Atomic` (other
work as one unit that never commits a transaction the caller owns). `run(conn, work)`
executes the steps on a `psycopg.Connection`, `arun(aconn, work)` on a `psycopg.AsyncConnection`;
both run them inside `translate()`, so a refused row raises the same jobcron error either way. The
order of statements, what they are given and what is made of their results exist once, in the
generator: the two drivers only know how to execute a step. Work that needs more than statements
(a wait sleeps until a notification) yields steps of its own kinds, which the caller of `run` or
`arun` executes through their `other` argument.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.rows import dict_row

from jobcron.sql import sql
from jobcron.store import _TIMESTAMPTZ_OID, _cursor, _TimestamptzOrText
from jobcron.store.translate import translate

T = TypeVar("T")


@dataclass(frozen=True)
class One:
    """A named query; receives its first row as a dict, or None."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    lenient_times: bool = False


@dataclass(frozen=True)
class All:
    """A named query; receives its rows as dicts."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Exec:
    """A named statement; receives its row count."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Copy:
    """COPY ... FROM STDIN (a named statement) of these rows; receives how many were written."""

    name: str
    rows: Iterable[Sequence[Any]]


@dataclass(frozen=True)
class Atomic:
    """`work` as one unit that never commits a transaction the caller owns; receives what work returns.

    The rule is `own_transaction`'s; an error inside rolls back the unit (when it is one of its own)
    and goes on up.
    """

    work: Generator[Any, Any, Any]


Step = One | All | Exec | Copy | Atomic


def own_transaction(autocommit: bool, status: pq.TransactionStatus) -> bool:
    """Whether an Atomic unit opens a transaction (or savepoint) of its own on a connection in this state.

    autocommit: a short transaction of its own; inside the caller's transaction: a savepoint, so a
    refused row does not abort it; idle and not autocommit: no, the statements open the transaction
    that the caller commits or rolls back.
    """
    return autocommit or status == pq.TransactionStatus.INTRANS


Work = Generator[Step, Any, T]


def run(
    conn: psycopg.Connection[Any],
    work: Generator[Any, Any, T],
    other: Callable[[Any], Any] | None = None,
) -> T:
    """Execute work's steps on a sync connection; what work returns.

    A step that is none of the above goes to `other` (a caller's own kinds of step, as a wait's),
    whose return value is sent back to the work.
    """
    cursors: dict[bool, psycopg.Cursor[dict[str, Any]]] = {}
    try:
        with translate():
            return _drive(conn, cursors, work, other)
    finally:
        for cur in cursors.values():
            cur.close()


def _drive(
    conn: psycopg.Connection[Any],
    cursors: dict[bool, psycopg.Cursor[dict[str, Any]]],
    work: Generator[Any, Any, T],
    other: Callable[[Any], Any] | None,
) -> T:
    """run()'s loop; an Atomic unit's work is driven on the same cursors."""
    answer: Any = None
    try:
        while True:
            step = work.send(answer)
            if isinstance(step, One | All | Exec):
                lenient = isinstance(step, One) and step.lenient_times
                cur = cursors.get(lenient)
                if cur is None:
                    cur = cursors[lenient] = _cursor(conn, lenient_times=lenient)
                cur.execute(sql(step.name), step.params)
                if isinstance(step, One):
                    answer = cur.fetchone()
                elif isinstance(step, All):
                    answer = cur.fetchall()
                else:
                    answer = cur.rowcount
            elif isinstance(step, Copy):
                written = 0
                with conn.cursor() as plain, plain.copy(sql(step.name)) as copy:
                    for row in step.rows:
                        copy.write_row(row)
                        written += 1
                answer = written
            elif isinstance(step, Atomic):
                own = own_transaction(conn.autocommit, conn.info.transaction_status)
                with conn.transaction() if own else nullcontext():
                    answer = _drive(conn, cursors, step.work, other)
            else:
                answer = _other(other, step)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def arun(
    conn: psycopg.AsyncConnection[Any],
    work: Generator[Any, Any, T],
    other: Callable[[Any], Awaitable[Any]] | None = None,
) -> T:
    """Execute work's steps on an async connection; what work returns (`other` as for `run`, awaited)."""
    cursors: dict[bool, psycopg.AsyncCursor[dict[str, Any]]] = {}
    try:
        with translate():
            return await _adrive(conn, cursors, work, other)
    finally:
        for cur in cursors.values():
            await cur.close()


async def _adrive(
    conn: psycopg.AsyncConnection[Any],
    cursors: dict[bool, psycopg.AsyncCursor[dict[str, Any]]],
    work: Generator[Any, Any, T],
    other: Callable[[Any], Awaitable[Any]] | None,
) -> T:
    """_drive, awaited."""
    answer: Any = None
    try:
        while True:
            step = work.send(answer)
            if isinstance(step, One | All | Exec):
                lenient = isinstance(step, One) and step.lenient_times
                cur = cursors.get(lenient)
                if cur is None:
                    cur = cursors[lenient] = conn.cursor(row_factory=dict_row)
                    if lenient:
                        cur.adapters.register_loader(_TIMESTAMPTZ_OID, _TimestamptzOrText)
                await cur.execute(sql(step.name), step.params)
                if isinstance(step, One):
                    answer = await cur.fetchone()
                elif isinstance(step, All):
                    answer = await cur.fetchall()
                else:
                    answer = cur.rowcount
            elif isinstance(step, Copy):
                written = 0
                async with conn.cursor() as plain, plain.copy(sql(step.name)) as copy:
                    for row in step.rows:
                        await copy.write_row(row)
                        written += 1
                answer = written
            elif isinstance(step, Atomic):
                own = own_transaction(conn.autocommit, conn.info.transaction_status)
                async with conn.transaction() if own else nullcontext():
                    answer = await _adrive(conn, cursors, step.work, other)
            else:
                answer = await _other(other, step)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _other(other: Callable[[Any], T] | None, step: Any) -> T:
    if other is None:
        raise TypeError(f"no driver for the step {step!r}")
    return other(step)
