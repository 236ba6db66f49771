"""The main loop's connection: generic plans, and one policy for outages and lock waits.

Every call goes through `run(fn)`: the hot path is a plain call; a failure for want of the server (or of
a lock held by another session, which waits at most database.lock_timeout_seconds) is retried with
jittered backoff, warned about now and then, and, when the connection itself was lost, the new one is
brought back in step with the database first (`on_reconnect`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from jobcron.config import Config
from jobcron.daemon.sdnotify import Notifier
from jobcron.daemon.state import DaemonState
from jobcron.db import DB_UNAVAILABLE, Connection, Outage, connect, retrying, waited_too_long

if TYPE_CHECKING:
    from jobcron.daemon.metrics import Metrics

T = TypeVar("T")
# after SIGTERM, how long past the grace period a database call still waits for the server
STOP_DB_WAIT_SECONDS = 5.0


class MainConnection:
    """The connection the loop claims and records on, with the retry policy around it."""

    def __init__(
        self,
        config: Config,
        state: DaemonState,
        log: Any,
        notifier: Notifier,
        *,
        once: bool,
        on_reconnect: Callable[[Connection], None],
    ) -> None:
        self.config = config
        self.state = state
        self.log = log
        self.notifier = notifier
        self.once = once
        self.on_reconnect = on_reconnect
        self.metrics: Metrics | None = None
        self._conn: Connection | None = None
        self.outage: Outage | None = None  # set while this connection cannot reach the server
        # the connection was lost (not merely a statement ended for waiting): the new one must take the
        # worker id again and put back claims whose answer was lost with the old one
        self.lost = False
        self.gave_up = False  # --once stopped waiting for the database: the rest may not wait either
        self._interrupted_at: float | None = None

    @property
    def conn(self) -> Connection | None:
        """The connection, if one is open now."""
        return self._conn

    def connection(self) -> Connection:
        """The open connection, or a new one."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.config, purpose="worker", generic_plans=True)
        return self._conn

    def run(self, fn: Callable[[Connection], T], *, must_finish: bool = False) -> T:
        """fn on the connection, retried while the server is unavailable or a lock is not granted.

        must_finish: keep trying after a first stop signal (a record), until the stop's deadline.
        """
        stop = self.state.hard_stop if must_finish else self.state.stop
        if self.outage is None and self._conn is not None and not self._conn.closed:
            try:
                return self._call(fn, self._conn)  # the hot path: no retry machinery unless something failed
            except DB_UNAVAILABLE as exc:
                self.failed(exc)
                if stop.is_set():
                    raise  # stopping: a statement that waited in vain is not tried again
        for attempt in retrying(stop, on_retry=self.on_retry, deadline=self.deadline):
            with attempt:
                conn = self.connection()
                if self.lost:
                    self.on_reconnect(conn)
                    self.lost = False
                result = self._call(fn, conn)
                # back only once a statement went through: a connection alone proves nothing when
                # another session's lock is what stops the statements
                if self.outage is not None:
                    self.back()
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, fn: Callable[[Connection], T], conn: Connection) -> T:
        # while a statement waits for the server, the watchdog knows the loop is waiting, not hung
        with self.state.waiting_for_db():
            return fn(conn)

    def on_retry(self, retry_state: Any) -> None:
        """tenacity's before_sleep: the loop is retrying, not hung; count the failure."""
        self.state.tick()
        self.failed(retry_state.outcome.exception() if retry_state.outcome else None)

    def failed(self, exc: BaseException | None) -> None:
        """A call failed for want of the server or of a lock."""
        if self.outage is None:
            self.outage = Outage()
            self.notifier.status("db unavailable")
        self.outage.failed(self.log, exc)
        conn = self._conn
        if exc is not None and waited_too_long(exc) and conn is not None and not (conn.closed or conn.broken):
            return  # the statement was rolled back and the connection is fine: keep it (and its worker-id lock)
        self.drop()
        self.lost = True

    def back(self) -> None:
        """A statement went through after an outage."""
        assert self.outage is not None
        self.log.info("db_reconnected", down_seconds=round(self.outage.seconds, 1))
        self.outage = None
        if self.metrics is not None:
            self.metrics.db_reconnected("worker")
        if self.state.grace_deadline is None:  # a stop's STATUS=stopping stays
            self.notifier.status(self.state.status_text())

    def deadline(self) -> float | None:
        """When a call stops waiting for the server: never, unless --once or a stop sets a limit."""
        if self.gave_up:
            return 0.0
        limits = []
        if self.once and self.outage is not None:
            limits.append(self.outage.since + self.config.daemon.once_db_wait_seconds)
        if self.state.grace_deadline is not None:
            limits.append(self.state.grace_deadline + STOP_DB_WAIT_SECONDS)
        return min(limits, default=None)

    def interrupt_overdue(self, now: float, others: list[tuple[str, Connection | None, bool]]) -> None:
        """Past the stop's deadline, cancel the statements that still wait (every second while they do).

        A lock timeout ends such a wait by itself; this holds where none is set (a transaction-mode pooler,
        lock_timeout_seconds 0) and keeps the stop within the grace plus STOP_DB_WAIT_SECONDS. A cancel
        request that arrives as a statement has just ended cancels the next one instead, which is retried
        like any statement the server ended: nothing is half-written.
        """
        grace = self.state.grace_deadline
        if grace is None or now < grace + STOP_DB_WAIT_SECONDS:
            return
        if self._interrupted_at is not None and now - self._interrupted_at < 1.0:
            return
        candidates = [("worker", self._conn, self.state.loop_db_since is not None), *others]
        busy = [
            (name, conn)
            for name, conn, waiting in candidates
            if waiting and conn is not None and not conn.closed
        ]
        if not busy:
            return
        self._interrupted_at = now
        for name, conn in busy:
            self.log.warning("db_statement_interrupted", where=name, reason="stop deadline passed")
            threading.Thread(target=_cancel, args=(conn,), daemon=True).start()

    def drop(self) -> None:
        """Close the connection (it may be broken already)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # the connection is already broken
                self.log.debug("close_failed")
            self._conn = None


def _cancel(conn: Connection) -> None:
    """Ask the server to cancel what conn runs (from another thread; psycopg allows it)."""
    try:
        conn.cancel_safe(timeout=STOP_DB_WAIT_SECONDS)
    except Exception:  # the connection may be gone meanwhile: nothing left to cancel
        return
