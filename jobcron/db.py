"""Connections: libpq pass-through, secrets kept out of messages, and the reconnect policy."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_any,
    stop_when_event_set,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from jobcron.config import Config, redact_url
from jobcron.errors import ConfigError

Connection = psycopg.Connection[dict[str, Any]]
T = TypeVar("T")

# Errors that mean "the server is not reachable right now", as opposed to a bad query.
DB_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError)


def dsn_of(config: Config) -> str:
    """The configured database URL, or a clear error when there is none."""
    if not config.database.url:
        raise ConfigError(
            "database.url: no database configured (set DATABASE_URL or POSTGRES_URL, "
            "or database.url in config.json)"
        )
    return config.database.url


def scrub(message: str, dsn: str | None) -> str:
    """Remove a DSN's password from an error message."""
    if not dsn:
        return message
    redacted = redact_url(dsn) or ""
    message = message.replace(dsn, redacted)
    try:
        password = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        password = None
    if password:
        message = message.replace(str(password), "***")
    return message


def connect(
    config: Config, *, autocommit: bool = True, purpose: str = "main", generic_plans: bool = False
) -> Connection:
    """Open a connection with the configured timeout and an application_name that says what it is for.

    generic_plans: plan each prepared statement once, for the daemon's own connection: its hot
    queries are written so that their generic plan is the good one, and re-planning them costs more
    than running them. Every statement on that connection reads a handful of rows through an index,
    so bitmap scans (which sort what an ordered index scan would stream) are turned off there.
    """
    dsn = dsn_of(config)
    prepared = config.database.prepared_statements
    settings: list[str] = []
    if generic_plans and prepared:
        settings += ["-c plan_cache_mode=force_generic_plan", "-c enable_bitmapscan=off"]
    extra: dict[str, Any] = {}
    if settings:
        extra["options"] = merged_options(dsn, settings)
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=autocommit,
            row_factory=dict_row,
            connect_timeout=config.database.connect_timeout_seconds,
            application_name=f"{config.database.application_name}:{purpose}",
            **extra,
        )
    except psycopg.Error as exc:
        raise type(exc)(scrub(str(exc), dsn)) from None
    if generic_plans and prepared:
        conn.prepare_threshold = 0  # prepare the hot statements at once rather than after five uses
    elif not prepared:
        conn.prepare_threshold = None  # a transaction-mode pooler would lose them between transactions
    return conn


def merged_options(dsn: str, settings: list[str]) -> str:
    """The daemon's session settings plus the URL's own `options` (or PGOPTIONS), which come last and win.

    Passing `options` to libpq replaces the URL's: a search_path given there would be lost, and the
    daemon would look for its tables in another schema than `migrate` and `status` use.
    """
    try:
        given = psycopg.conninfo.conninfo_to_dict(dsn).get("options")
    except psycopg.ProgrammingError:
        given = None  # not parsable here: libpq will say what is wrong with it when connecting
    if given is None:
        given = os.environ.get("PGOPTIONS")  # what libpq would have used had no options been passed
    return " ".join([*settings, *([str(given)] if given else [])])


def connect_dsn(dsn: str, *, autocommit: bool = True) -> Connection:
    """Open a connection to a DSN (tests, CLI helpers)."""
    try:
        return psycopg.connect(dsn, autocommit=autocommit, row_factory=dict_row)
    except psycopg.Error as exc:
        raise type(exc)(scrub(str(exc), dsn)) from None


def retrying(
    stop_event: threading.Event | None,
    *,
    max_seconds: float | None = None,
    on_retry: Callable[[RetryCallState], None] | None = None,
    initial: float = 0.1,
    maximum: float = 5.0,
) -> Retrying:
    """The infrastructure retry policy: exponential jittered backoff on unavailability, interruptible."""

    def sleep(seconds: float) -> None:
        if stop_event is None:
            threading.Event().wait(seconds)
        else:
            stop_event.wait(seconds)

    never = threading.Event()
    stop: stop_base = stop_when_event_set(stop_event or never)
    if max_seconds is not None:
        stop = stop_any(stop, stop_after_delay(max_seconds))
    return Retrying(
        retry=retry_if_exception_type(DB_UNAVAILABLE),
        wait=wait_exponential(multiplier=initial, max=maximum) + wait_random(0, initial),
        stop=stop,
        sleep=sleep,
        before_sleep=on_retry,
        reraise=True,
    )
