"""Connections: libpq pass-through, secrets kept out of messages, and the reconnect policy."""

from __future__ import annotations

import os
import re
import selectors
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_any,
    stop_when_event_set,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from jobcron.config import Config, redact_url
from jobcron.errors import ConfigError
from jobcron.sql import sql

Connection = psycopg.Connection[dict[str, Any]]
T = TypeVar("T")

# The daemon's own connection: generic plans, index probes only (see connect()).
WORKER_PLANNER_OPTIONS = (
    "-c plan_cache_mode=force_generic_plan",
    "-c enable_seqscan=off",
    "-c enable_bitmapscan=off",
    "-c enable_hashjoin=off",
    "-c enable_mergejoin=off",
    # a plan the settings above force (a seq scan costed as disabled: 1e10) would pass jit_above_cost
    # and compile on every execution, 100-200 ms each on a server with jit on: measured on a webhook
    # subscriptions scan before its function got settings of its own. OLTP statements never gain from JIT.
    "-c jit=off",
)

# Errors that mean "the server is not reachable right now", as opposed to a bad query.
DB_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError)
# Any error from the database or the driver: outages, refusals, a value the server will not store.
DATABASE_ERROR = psycopg.Error
# The server refused the values of a row (a constraint, a value its column type cannot hold).
ROW_REFUSED = (psycopg.errors.IntegrityError, psycopg.errors.DataError)
# A statement the server ended because it waited too long for a lock (lock_timeout) or was cancelled
# (statement_timeout, a cancel request): both OperationalErrors, so retried like an outage. The
# statement was rolled back as a whole, and the connection is still good: no reconnect is needed,
# and no claim can have been committed without this daemon seeing it.
WAITED_TOO_LONG = (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)

LOCK_HINT = (
    "another session holds a lock on a jobcron table or row (pg_locks, pg_stat_activity show who); "
    "each statement waits database.lock_timeout_seconds, then is tried again"
)

# While the database stays unreachable, warn at once, then 1, 2, 4 ... seconds later, at most a minute apart.
WARN_FIRST_GAP_SECONDS = 1.0
WARN_MAX_GAP_SECONDS = 60.0


class DatabaseRefused(psycopg.OperationalError):
    """The server, or a pooler in front of it, refused the connection for a reason a retry cannot fix.

    An OperationalError, so that a daemon that is already running retries it like an outage (the
    role or the pooler may be fixed meanwhile); at start, and for one-shot commands, it is a
    configuration error (exit 2).
    """

    def __init__(self, cause: str, *, code: str, name: str, hint: str) -> None:
        super().__init__(
            f"the database refused the connection (SQLSTATE {code} {name}): {cause}; hint: {hint}"
        )
        self.code = code
        self.cause = cause
        self.hint = hint


POOLER_HINT = (
    "a pooler such as PgBouncer refuses startup parameters it does not track: set "
    "database.prepared_statements: false (JOB_CRON_DATABASE_PREPARED_STATEMENTS=false: no startup options "
    "are sent), and in transaction pooling mode also daemon.listen: false (--no-listen); or, on "
    "PgBouncer 1.21+ with max_prepared_statements set (older ones lose prepared statements), add "
    "ignore_startup_parameters = options to pgbouncer.ini (docs/deployment.md, PgBouncer)"
)
# What a transaction-mode pooler that does not track prepared statements (PgBouncer before 1.21, or
# without max_prepared_statements) does to them: a server connection holds another client's statement
# of the same name (42P05), or not the one this client prepared on another (26000). A direct
# connection never sees either: psycopg names its statements per connection.
PREPARED_LOST = (psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName)
PREPARED_LOST_HINT = (
    "a pooler in transaction mode (PgBouncer before 1.21, or without max_prepared_statements) shares its "
    "server connections between clients, and a prepared statement stays on the one it was made on: set "
    "database.prepared_statements: false (JOB_CRON_DATABASE_PREPARED_STATEMENTS=false; docs/deployment.md, PgBouncer)"
)
# SQLSTATEs answered to a connection attempt that no retry can change: the URL, the credentials,
# the server's pg_hba.conf or the startup options are wrong. Anything else (57P03 starting up, 53300
# too many clients, no answer at all) may pass and is retried.
REFUSALS: dict[str, tuple[str, str]] = {
    "28P01": ("invalid_password", "check the password in the database URL (or in ~/.pgpass, PGPASSWORD)"),
    "28000": (
        "invalid_authorization_specification",
        "check the user name in the database URL, and the server's pg_hba.conf (which user may "
        "connect to which database, from which address, how)",
    ),
    "3D000": (
        "invalid_catalog_name",
        "check the database name in the database URL: the database must exist before `job_cron migrate`",
    ),
    "42501": (
        "insufficient_privilege",
        "the role may not connect to this database: GRANT CONNECT ON DATABASE ... TO the role",
    ),
    "42704": (
        "undefined_object",
        "the options= of the database URL (or PGOPTIONS) name a setting this server does not know",
    ),
    "22023": (
        "invalid_parameter_value",
        "the options= of the database URL (or PGOPTIONS) give a value this server refuses",
    ),
    "08P01": ("protocol_violation", POOLER_HINT),
}


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


def connect_args(
    config: Config,
    purpose: str,
    *,
    generic_plans: bool = False,
    lock_timeout: bool = True,
    statement_timeout_seconds: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """The DSN and the libpq parameters `connect` uses (a pool opens its connections with them too)."""
    dsn = dsn_of(config)
    prepared = config.database.prepared_statements
    settings: list[str] = []
    if prepared:
        if generic_plans:
            settings += WORKER_PLANNER_OPTIONS
        if lock_timeout and config.database.lock_timeout_seconds > 0:
            settings.append(f"-c lock_timeout={_milliseconds(config.database.lock_timeout_seconds)}")
        if statement_timeout_seconds is not None and statement_timeout_seconds > 0:
            settings.append(f"-c statement_timeout={_milliseconds(statement_timeout_seconds)}")
        if config.database.schema:
            settings.append(f"-c search_path={config.database.schema}")  # an identifier: nothing to escape
    params: dict[str, Any] = {
        "connect_timeout": config.database.connect_timeout_seconds,
        "application_name": f"{config.database.application_name}:{purpose}",
    }
    if _url_sets(dsn, "connect_timeout"):
        # the URL's own (a multi-host failover URL tunes it per host): a keyword would replace it
        del params["connect_timeout"]
    if settings:
        params["options"] = merged_options(dsn, settings)
    return dsn, params


def without_password(dsn: str) -> tuple[str, str | None]:
    """The connection string without its password, and the password (for PGPASSWORD: a command
    line is readable by every local user, an environment only by the process's own)."""
    params = conninfo_to_dict(dsn)
    password = params.pop("password", None)
    return make_conninfo("", **params), (None if password is None else str(password))


def _url_sets(dsn: str, key: str) -> bool:
    """Whether the connection string names this parameter itself."""
    try:
        return key in conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return False  # a malformed string: the connection attempt says what is wrong with it


def connect(
    config: Config,
    *,
    autocommit: bool = True,
    purpose: str = "main",
    generic_plans: bool = False,
    lock_timeout: bool = True,
    statement_timeout_seconds: float | None = None,
) -> Connection:
    """Open a connection with the configured timeout and an application_name that says what it is for.

    generic_plans: plan each prepared statement once, for the daemon's own connection: its hot
    queries are written so that their generic plan is the good one, and re-planning them costs more
    than running them. Every statement on that connection reads a handful of rows through an index,
    so everything else is turned off there: a generic plan is made once, often while the queue is
    empty and its statistics say so, and must not then become a scan or a hash of a million rows
    (sequential, bitmap, hash-join and merge-join paths remain only where nothing else can serve).

    lock_timeout: every statement waits at most database.lock_timeout_seconds for a lock another
    session holds (off for `migrate`, whose advisory lock and DDL must wait for what they wait for).
    statement_timeout_seconds: a limit on every statement (the health probe's budget). Both are
    startup options, like the planner settings: none are sent with database.prepared_statements false
    (a transaction-mode pooler refuses them; set them on the role there).
    """
    dsn, params = connect_args(
        config,
        purpose,
        generic_plans=generic_plans,
        lock_timeout=lock_timeout,
        statement_timeout_seconds=statement_timeout_seconds,
    )
    prepared = config.database.prepared_statements
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, row_factory=dict_row, **params)
    except psycopg.OperationalError as exc:
        raise connect_error(exc, dsn, params) from None
    except psycopg.Error as exc:
        raise type(exc)(scrub(str(exc), dsn)) from None
    if config.database.schema and not prepared and purpose != "migrate":
        check_schema(conn, config.database.schema)
    if generic_plans and prepared:
        conn.prepare_threshold = 0  # prepare the hot statements at once rather than after five uses
    elif not prepared:
        conn.prepare_threshold = None  # a transaction-mode pooler would lose them between transactions
    return conn


def current_schema(conn: Connection) -> str | None:
    """The schema this session creates in and finds unqualified names in first (None: none exists)."""
    row = conn.execute(sql("current_schema")).fetchone()
    return None if row is None else row["schema"]


def check_schema(conn: Connection, schema: str) -> None:
    """database.schema without startup options (a transaction-mode pooler): the role must put it first."""
    found = current_schema(conn)
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        conn.rollback()
    if found != schema:
        user = conn.info.user
        conn.close()
        raise ConfigError(
            f"database.schema: {schema!r}, but this session's search_path puts it in "
            f"{repr(found) if found else 'no schema it may use'}; with "
            "database.prepared_statements false no startup options are sent, so set it on the role: "
            f'ALTER ROLE "{user}" SET search_path = {schema}'
        )


def _milliseconds(seconds: float) -> int:
    """A duration setting in PostgreSQL's unit, never 0 (which would mean no limit at all)."""
    return max(1, round(seconds * 1000))


def waited_too_long(exc: BaseException) -> bool:
    """Whether the server ended the statement for waiting (a lock, a statement timeout, a cancel)."""
    return isinstance(exc, WAITED_TOO_LONG)


def waited_message(exc: BaseException, config: Config) -> str:
    """What a command says when the server ended its statement for waiting too long (nothing was written)."""
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return (
            f"database did not answer within {config.database.lock_timeout_seconds:g}s: another session "
            "holds a lock the statement waits for (database.lock_timeout_seconds; pg_locks and "
            "pg_stat_activity show who holds it)"
        )
    cause = " ".join(str(exc).split())[:200]
    return f"the database ended the statement before it answered: {cause}"


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


def connect_error(
    exc: psycopg.OperationalError, dsn: str, params: dict[str, Any]
) -> psycopg.OperationalError:
    """What a failed connection attempt raises: DatabaseRefused when the server's SQLSTATE says that
    retrying cannot help, else the driver's error; both without the password."""
    message = scrub(str(exc).strip(), dsn)
    try:
        conninfo = make_conninfo(dsn, **params)
    except psycopg.ProgrammingError:
        return type(exc)(message)
    code = _failure_sqlstate(exc, conninfo, float(params.get("connect_timeout") or 5))
    if code not in REFUSALS:
        return type(exc)(message)
    name, hint = REFUSALS[code]
    if code == "08P01" and (conninfo_to_dict(dsn).get("options") or os.environ.get("PGOPTIONS")):
        hint += "; the URL's options= (or PGOPTIONS) are startup options too: remove them there"
    return DatabaseRefused(_one_line(message), code=code, name=name, hint=hint)


def _one_line(message: str) -> str:
    """libpq's lines joined, without the ones that repeat an earlier line's end (one per attempt)."""
    kept: list[str] = []
    for line in (part.strip() for part in message.splitlines()):
        if line and not any(earlier.endswith(line) for earlier in kept):
            kept.append(line)
    return " ".join(kept)


# (conninfo, error text) -> the SQLSTATE found for it: an outage repeats the same failure, and
# the same text is the same cause, so it is probed once rather than at every reconnect attempt
_failure_codes: dict[tuple[str, str], str | None] = {}
FAILURE_CODES_KEPT = 64
_TRACE_SQLSTATE = re.compile(rb'\tErrorResponse\t.*? C "([0-9A-Z]{5})"')


def _failure_sqlstate(exc: psycopg.OperationalError, conninfo: str, timeout: float) -> str | None:
    if exc.pgconn is None or isinstance(exc, psycopg.errors.ConnectionTimeout):
        return None  # no server answered: a name that does not resolve, a timeout
    key = (conninfo, str(exc))
    if key not in _failure_codes:
        if len(_failure_codes) >= FAILURE_CODES_KEPT:
            _failure_codes.clear()
        _failure_codes[key] = _probe_sqlstate(conninfo, timeout)
    return _failure_codes[key]


def _probe_sqlstate(conninfo: str, timeout: float) -> str | None:
    """Connect once more with libpq's protocol trace on, and read the SQLSTATE the server answered with.

    psycopg keeps only the text of an error received while connecting (psycopg issue 1188), and the
    text is in the server's language; the ErrorResponse's code field is in libpq's trace (libpq 14+),
    written here to an anonymous in-memory file that is never logged (it may hold a password message).
    """
    try:
        fd = os.memfd_create("jobcron-connect-trace", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return None  # not Linux (psycopg traces only there)
    pgconn: pq.abc.PGconn | None = None
    traced = False
    try:
        pgconn = pq.PGconn.connect_start(conninfo.encode())
        pgconn.trace(fd)
        traced = True
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        if not _attempt_failed(pgconn, timeout):
            return None
        pgconn.untrace()
        traced = False
        os.lseek(fd, 0, os.SEEK_SET)
        codes = _TRACE_SQLSTATE.findall(_read_all(fd))
        return codes[-1].decode() if codes else None
    except Exception:  # a probe must never turn one failure into another: without a code, retry
        return None
    finally:
        if pgconn is not None:
            if traced:
                pgconn.untrace()
            pgconn.finish()
        os.close(fd)


def _attempt_failed(pgconn: pq.abc.PGconn, timeout: float) -> bool:
    """Drive a non-blocking connection attempt to its end; True when it failed before the timeout."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        while pgconn.status != pq.ConnStatus.BAD:
            status = pgconn.connect_poll()
            if status == pq.PollingStatus.OK:
                return False
            if status == pq.PollingStatus.FAILED:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            event = selectors.EVENT_READ if status == pq.PollingStatus.READING else selectors.EVENT_WRITE
            selector.register(pgconn.socket, event)
            selector.select(left)
            selector.unregister(pgconn.socket)
    return True


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def connect_dsn(dsn: str, *, autocommit: bool = True) -> Connection:
    """Open a connection to a DSN (tests, CLI helpers)."""
    try:
        return psycopg.connect(dsn, autocommit=autocommit, row_factory=dict_row)
    except psycopg.Error as exc:
        raise type(exc)(scrub(str(exc), dsn)) from None


class Outage:
    """One stretch of failed attempts to reach the database: how long, how many, when to warn again."""

    def __init__(self) -> None:
        self.since = time.monotonic()
        self.attempts = 0
        self._gap = WARN_FIRST_GAP_SECONDS
        self._next_warning = self.since  # the first failure is reported at once

    @property
    def seconds(self) -> float:
        """Time since the first failure."""
        return time.monotonic() - self.since

    def failed(self, log: Any, exc: BaseException | None, **fields: Any) -> None:
        """Count a failed attempt, and log it when the last warning is old enough (never silence, never a flood)."""
        self.attempts += 1
        now = time.monotonic()
        if now < self._next_warning:
            return
        self._next_warning = now + self._gap
        self._gap = min(self._gap * 2, WARN_MAX_GAP_SECONDS)
        fields |= {"down_seconds": round(now - self.since, 1), "attempts": self.attempts}
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            fields |= {"reason": "lock_timeout", "hint": LOCK_HINT}
        elif isinstance(exc, psycopg.errors.QueryCanceled):
            fields["reason"] = "statement_cancelled"
        if isinstance(exc, DatabaseRefused):
            log.error("db_refused", sqlstate=exc.code, error=exc.cause[:300], hint=exc.hint, **fields)
        else:
            log.warning("db_unavailable", error=str(exc).strip()[:200], **fields)


def retrying(
    stop_event: threading.Event | None,
    *,
    max_seconds: float | None = None,
    on_retry: Callable[[RetryCallState], None] | None = None,
    initial: float = 0.1,
    maximum: float = 5.0,
    deadline: Callable[[], float | None] | None = None,
    refusals: bool = True,
) -> Retrying:
    """The infrastructure retry policy: exponential jittered backoff on unavailability, interruptible.

    deadline: asked after every failure, a monotonic time after which to give up (None: no limit),
    so that a limit set while waiting (a SIGTERM's grace period) still applies. refusals: whether a
    DatabaseRefused is retried too (a running daemon) or raised at once (at start).
    """

    def sleep(seconds: float) -> None:
        at = deadline() if deadline is not None else None
        if at is not None:
            seconds = max(0.0, min(seconds, at - time.monotonic()))
        if stop_event is None:
            threading.Event().wait(seconds)
        else:
            stop_event.wait(seconds)

    def worth_retrying(exc: BaseException) -> bool:
        return isinstance(exc, DB_UNAVAILABLE) and (refusals or not isinstance(exc, DatabaseRefused))

    never = threading.Event()
    stop: stop_base = stop_when_event_set(stop_event or never)
    if max_seconds is not None:
        stop = stop_any(stop, stop_after_delay(max_seconds))
    if deadline is not None:
        stop = stop_any(stop, _StopAtDeadline(deadline))
    return Retrying(
        retry=retry_if_exception(worth_retrying),
        wait=wait_exponential(multiplier=initial, max=maximum) + wait_random(0, initial),
        stop=stop,
        sleep=sleep,
        before_sleep=on_retry,
        reraise=True,
    )


class _StopAtDeadline(stop_base):
    def __init__(self, deadline: Callable[[], float | None]) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        at = self.deadline()
        return at is not None and time.monotonic() >= at
