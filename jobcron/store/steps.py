"""Database work written once, run on a sync or an async psycopg connection.

A piece of work that both `jobcron` (sync) and `jobcron.aio` (asyncio) do is a generator that yields
steps and receives their results: `One`, `All` (a named query, its row or rows), `Exec` (its row
count) and `Copy` (COPY FROM STDIN of the given rows, how many were written). `run(conn, work)`
executes the steps on a `psycopg.Connection`, `arun(aconn, work)` on a `psycopg.AsyncConnection`;
both run them inside `translate()`, so a refused row raises the same jobcron error either way. The
order of statements, what they are given and what is made of their results exist once, in the
generator: the two drivers only know how to execute a step.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

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


Step = One | All | Exec | Copy
Work = Generator[Step, Any, T]


def run(conn: psycopg.Connection[Any], work: Work[T]) -> T:
    """Execute work's steps on a sync connection; what work returns."""
    with translate(), _cursor(conn) as cur:
        answer: Any = None
        try:
            while True:
                step = work.send(answer)
                if isinstance(step, Copy):
                    written = 0
                    with cur.copy(sql(step.name)) as copy:
                        for row in step.rows:
                            copy.write_row(row)
                            written += 1
                    answer = written
                    continue
                if isinstance(step, One) and step.lenient_times:
                    with _cursor(conn, lenient_times=True) as lenient:
                        lenient.execute(sql(step.name), step.params)
                        answer = lenient.fetchone()
                    continue
                cur.execute(sql(step.name), step.params)
                answer = (
                    cur.fetchone()
                    if isinstance(step, One)
                    else cur.fetchall()
                    if isinstance(step, All)
                    else cur.rowcount
                )
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


async def arun(conn: psycopg.AsyncConnection[Any], work: Work[T]) -> T:
    """Execute work's steps on an async connection; what work returns."""
    from psycopg.rows import dict_row

    with translate():
        async with conn.cursor(row_factory=dict_row) as cur:
            answer: Any = None
            try:
                while True:
                    step = work.send(answer)
                    if isinstance(step, Copy):
                        written = 0
                        async with cur.copy(sql(step.name)) as copy:
                            for row in step.rows:
                                await copy.write_row(row)
                                written += 1
                        answer = written
                        continue
                    if isinstance(step, One) and step.lenient_times:
                        async with conn.cursor(row_factory=dict_row) as lenient:
                            lenient.adapters.register_loader(_TIMESTAMPTZ_OID, _TimestamptzOrText)
                            await lenient.execute(sql(step.name), step.params)
                            answer = await lenient.fetchone()
                        continue
                    await cur.execute(sql(step.name), step.params)
                    if isinstance(step, One):
                        answer = await cur.fetchone()
                    elif isinstance(step, All):
                        answer = await cur.fetchall()
                    else:
                        answer = cur.rowcount
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
