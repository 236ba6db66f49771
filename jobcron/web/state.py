"""What every request of one web app shares, reached from the request: the configuration, the pool, the event hub."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from psycopg_pool import ConnectionPool

from jobcron.config import Config
from jobcron.web.events import EventHub


@dataclass(frozen=True)
class Web:
    """What every request of one app shares: the configuration, the pool, the event hub."""

    config: Config
    dsn: str
    pool: ConnectionPool[Any]
    hub: EventHub


def _web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


@contextmanager
def _db(request: Request) -> Iterator[Any]:
    with _web(request).pool.connection() as conn:
        yield conn
