"""Helpers every `job_cron` command shares: config loading, connections, output, duration flags, errors to exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click
import psycopg

from jobcron import migrate
from jobcron.cli.render import echo
from jobcron.config import Config, load_config
from jobcron.db import (
    DB_UNAVAILABLE,
    PREPARED_LOST,
    PREPARED_LOST_HINT,
    WAITED_TOO_LONG,
    Connection,
    DatabaseRefused,
    connect,
    scrub,
    waited_message,
)
from jobcron.durations import parse_duration
from jobcron.errors import ConfigError, InvalidInput, JobCronError, SchemaOutOfDate, StoreError
from jobcron.terminal import printable

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_SCHEMA = 3

# What a query raises when the tables, columns or functions it names are not there: on jobcron's
# own queries, most often a database that was never migrated (or is behind this version)
MISSING_OBJECT = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedFunction,
)


@dataclass
class CliState:
    """What every command gets: where the config comes from and the CLI's overrides."""

    config_path: str | None
    explicit_config: bool
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def load(self, **more: dict[str, Any]) -> Config:
        """The effective config with this command's flag overrides applied."""
        merged = {k: dict(v) for k, v in self.overrides.items()}
        for section, values in more.items():
            merged.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
        return load_config(self.config_path, self.environ, merged)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print an error naming the problem and exit with a documented code."""
    click.echo(f"job_cron: error: {printable(message, keep_newlines=True)}", err=True)
    sys.exit(code)


@contextmanager
def invalid_input_exits() -> Iterator[None]:
    """Input rejected before the database saw it: exit 2 naming the problem."""
    try:
        yield
    except InvalidInput as exc:
        fail(str(exc), EXIT_CONFIG)


def emit(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    """Print JSON (one object) or the rendered text."""
    output(json.dumps(data, sort_keys=True, default=str) if as_json else render(data), as_json)


def output(text: str, as_json: bool) -> None:
    """JSON as it is (exact; json.dumps escapes control characters), text with control characters escaped."""
    if as_json:
        click.echo(text)
    else:
        echo(text)


def duration_option(value: str, flag: str) -> float:
    """The seconds a duration flag says ("90s", "15m", "1h30m"), or exit 2 naming the flag."""
    try:
        return parse_duration(value, flag)
    except InvalidInput as exc:
        fail(str(exc), EXIT_CONFIG)


@contextmanager
def handled(config: Config | None = None) -> Iterator[None]:
    """Map jobcron's errors to exit codes with a one-line message (never a traceback)."""
    dsn = config.database.url if config else None
    try:
        yield
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    except SchemaOutOfDate as exc:
        fail(str(exc), EXIT_SCHEMA)
    except StoreError as exc:
        # a row the database refused, reported as the database's own error (as before translation)
        fail(f"database error: {scrub(str(exc).strip(), dsn)}", EXIT_ERROR)
    except JobCronError as exc:
        fail(scrub(str(exc), dsn), EXIT_ERROR)
    except MISSING_OBJECT as exc:
        behind = schema_behind(config)
        if behind is not None:
            fail(str(behind), EXIT_SCHEMA)
        fail(f"database error: {scrub(str(exc).strip(), dsn)}", EXIT_ERROR)
    except DatabaseRefused as exc:
        # a wrong password, database name or startup option: a restart cannot fix it, an edit can
        fail(scrub(str(exc), dsn), EXIT_CONFIG)
    except DB_UNAVAILABLE as exc:
        fail(db_error_text(exc, config), EXIT_ERROR)
    except PREPARED_LOST as exc:
        fail(f"database error: {scrub(str(exc).strip(), dsn)}; hint: {PREPARED_LOST_HINT}", EXIT_ERROR)
    except psycopg.Error as exc:
        fail(f"database error: {scrub(str(exc).strip(), dsn)}", EXIT_ERROR)
    except UnicodeEncodeError as exc:
        # an argument with a byte that was not UTF-8 (argv keeps it as a lone surrogate): not storable
        fail(f"an argument is not valid UTF-8 text ({exc.object[exc.start : exc.end]!r})", EXIT_CONFIG)


def schema_behind(config: Config | None) -> SchemaOutOfDate | None:
    """Why jobcron's schema cannot serve its queries (never migrated, or behind), if that is the case.

    Asked only once a query has failed on a missing table, column or function, so that the commands
    that work pay nothing for it, and every command answers as `run` does: exit 3, run migrate.
    """
    if config is None or not config.database.url:
        return None
    try:
        with connect(config, purpose="cli") as conn:
            migrate.check(conn)
    except SchemaOutOfDate as exc:
        return exc
    except (psycopg.Error, JobCronError):
        return None  # the schema cannot be read either: the query's own error says more
    return None


def db_error_text(exc: BaseException, config: Config | None) -> str:
    """One line on a database that could not serve a command: unreachable, or a statement that waited too long."""
    if config is not None and isinstance(exc, WAITED_TOO_LONG):
        # a one-statement command (enqueue, cancel, retry) changed nothing and may simply be run again
        return waited_message(exc, config) + "; the statement was rolled back"
    return f"database unavailable: {scrub(str(exc).strip(), config.database.url if config else None)}"


def load_or_exit(state: CliState, **more: dict[str, Any]) -> Config:
    """Load the config or exit 2 naming the bad key."""
    try:
        return state.load(**more)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def open_db(
    config: Config,
    purpose: str = "cli",
    *,
    lock_timeout: bool = True,
    statement_timeout_seconds: float | None = None,
) -> Connection:
    """Connect for a CLI command: each statement waits at most database.lock_timeout_seconds for a lock,
    so a command never hangs behind another session's lock, and a killed one leaves no backend queued."""
    return connect(
        config,
        purpose=purpose,
        lock_timeout=lock_timeout,
        statement_timeout_seconds=statement_timeout_seconds,
    )
