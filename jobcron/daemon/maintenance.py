"""The daemon's second thread, on a connection of its own: the running job's lease, then the periodic
duties, each on its own timer (never per job): the worker row, rescue, retention, schedules, pauses.

Each duty is a small object whose `run_once(conn)` says how much it did. Its statements can wait for
other sessions' locks (up to database.lock_timeout_seconds each), so the systemd watchdog is pinged from
a thread of its own (daemon/watchdog.py).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from jobcron import __version__, store
from jobcron.config import Config
from jobcron.daemon.lease import Lease
from jobcron.daemon.sdnotify import Notifier
from jobcron.daemon.state import DaemonState, Running
from jobcron.db import (
    DB_UNAVAILABLE,
    PREPARED_LOST,
    PREPARED_LOST_HINT,
    Connection,
    Outage,
    connect,
    waited_too_long,
)
from jobcron.schedules import firing

if TYPE_CHECKING:
    from jobcron.daemon.metrics import Metrics

TICK_SECONDS = 0.05
MAX_SCHEDULE_BATCHES = 20
RETENTION_BUDGET_SECONDS = 1.0
RETENTION_BACKLOG_SECONDS = 0.5
PAUSE_REFRESH_SECONDS = 1.0
UNPARK_BATCH = 10_000


class Duty(Protocol):
    """A periodic task: how often, and one run of it."""

    name: str

    def interval(self) -> float: ...

    def run_once(self, conn: Connection) -> int: ...


@dataclass
class Every:
    """A duty made of a function and a fixed interval (the metrics sample)."""

    name: str
    seconds: float
    fn: Callable[[Connection], Any]

    def interval(self) -> float:
        """Seconds between runs."""
        return self.seconds

    def run_once(self, conn: Connection) -> int:
        """Call the function."""
        self.fn(conn)
        return 1


def host_pid() -> tuple[str, int]:
    """This daemon's host and process id, as job_workers shows them."""
    return socket.gethostname(), os.getpid()


class WorkerRow:
    """This daemon's row in job_workers: last seen, state, current job."""

    name = "worker_heartbeat"

    def __init__(self, owner: Maintenance) -> None:
        self.owner = owner

    def interval(self) -> float:
        """Every worker_heartbeat_seconds."""
        return self.owner.config.daemon.worker_heartbeat_seconds

    def run_once(self, conn: Connection) -> int:
        """Refresh the row; register again when it is gone (unless this daemon is stopping)."""
        o = self.owner
        running = o.state.running()
        current = running.job.id if running else None
        # the row is gone: an operator removed it, or this daemon is stopping and unregistered itself
        # (then it must stay gone)
        if store.worker_heartbeat(conn, o.worker_id, o.state.activity, current) == 0 and not o.halt.is_set():
            store.worker_register(conn, o.worker_id, *host_pid(), o.state.activity, __version__)
        return 1


class Rescue:
    """Jobs whose worker stopped heartbeating or that ran past the ceiling; then parked jobs that may run."""

    name = "rescue"

    def __init__(self, owner: Maintenance) -> None:
        self.owner = owner

    def interval(self) -> float:
        """Every rescue_interval_seconds."""
        return self.owner.config.daemon.rescue_interval_seconds

    def run_once(self, conn: Connection) -> int:
        """Rescue, then unpark."""
        return len(self.owner.rescue(conn)) + self.owner.unpark(conn)


class Retention:
    """Finished jobs older than cleanup_completed_jobs_days, deleted in small batches."""

    name = "retention"

    def __init__(self, owner: Maintenance) -> None:
        self.owner = owner
        self.backlog = False

    def interval(self) -> float:
        """Every retention_interval_seconds; sooner while a backlog remains."""
        return (
            RETENTION_BACKLOG_SECONDS if self.backlog else self.owner.config.daemon.retention_interval_seconds
        )

    def run_once(self, conn: Connection) -> int:
        """Delete batches within a time budget; the number deleted."""
        o = self.owner
        days = o.config.scheduler_settings.cleanup_completed_jobs_days
        if days <= 0:
            return 0  # 0 keeps finished jobs forever
        deleted = 0
        batch = o.config.daemon.retention_batch_size
        began = time.monotonic()
        self.backlog = False
        # small batches keep each delete short; a time budget per run keeps the heartbeats flowing,
        # and a backlog brings the next run forward so pruning keeps up with a busy queue
        while True:
            n = store.prune_finished_jobs(conn, days * 86400, batch)
            deleted += n
            if n < batch or o.halt.is_set():
                break
            if time.monotonic() - began >= RETENTION_BUDGET_SECONDS:
                self.backlog = True
                break
        if deleted:
            o.log.info("jobs_pruned", count=deleted, older_than_days=days)
        return deleted


class Schedules:
    """Due schedules: each occurrence fired once, however many daemons look."""

    name = "schedules"

    def __init__(self, owner: Maintenance) -> None:
        self.owner = owner

    def interval(self) -> float:
        """Every schedule_check_seconds."""
        return self.owner.config.daemon.schedule_check_seconds

    def run_once(self, conn: Connection) -> int:
        """Fire what is due (more than one batch after a downtime, within a cap); the number of firings."""
        o = self.owner
        catch_up = o.config.daemon.schedule_catch_up_seconds
        count = 0
        for _ in range(MAX_SCHEDULE_BATCHES):
            firings = firing.fire_due(conn, o.worker_id, catch_up_seconds=catch_up)
            for f in firings:
                fields = {
                    "schedule_id": f.schedule_id,
                    "schedule": f.name,
                    "occurrence_at": f.occurrence_at.isoformat(),
                }
                if f.outcome == firing.FIRED:
                    o.log.info("schedule_fired", job_id=f.job_id, **fields)
                elif f.outcome == firing.SKIPPED:
                    o.log.info("schedule_occurrence_skipped", **fields)
                elif f.outcome == firing.FAILED:
                    o.log.error("schedule_fire_failed", error=f.error, **fields)
                elif f.outcome == firing.INVALID:
                    o.log.error("schedule_disabled_invalid", error=f.error, **fields)
                elif f.outcome == firing.PLANNED:
                    o.log.info("schedule_planned", **fields)
            count += len(firings)
            if len(firings) < firing.FIRE_BATCH or o.halt.is_set():
                break
        return count


class Pauses:
    """The paused job types, read every second or at once when a pause changed."""

    name = "pauses"

    def __init__(self, owner: Maintenance) -> None:
        self.owner = owner

    def interval(self) -> float:
        """Every second; the housekeeper also runs it early when the pauses changed."""
        return PAUSE_REFRESH_SECONDS

    def run_once(self, conn: Connection) -> int:
        """Read the pauses; a change wakes the loop (a resumed daemon must not sleep until its next poll)."""
        state = self.owner.state
        state.pauses_dirty.clear()
        before, state.paused = state.paused, tuple(store.paused_types(conn))
        if before != state.paused:
            state.wake.set()
            return 1
        return 0


class Maintenance(threading.Thread):
    """The housekeeper: the lease of the running job, then the duties, on a connection of its own."""

    def __init__(
        self,
        config: Config,
        worker_id: str,
        state: DaemonState,
        log: Any,
        notifier: Notifier,
        *,
        on_grace_expired: Callable[[Connection | None, Running], None],
    ) -> None:
        super().__init__(name="jobcron-housekeeper", daemon=True)
        self.config = config
        self.worker_id = worker_id
        self.state = state
        self.log = log
        self.notifier = notifier
        self.on_grace_expired = on_grace_expired
        self.lease = Lease(state, config.daemon.heartbeat_interval_seconds, log)
        self.halt = threading.Event()
        self.in_tick = False  # this thread's statements may wait too (the stop deadline cancels them)
        self.pauses = Pauses(self)
        self.duties: list[Duty] = [
            WorkerRow(self),
            Rescue(self),
            Retention(self),
            Schedules(self),
            self.pauses,
        ]
        self._due: dict[str, float] = {}
        self._conn: Connection | None = None
        self.metrics: Metrics | None = None  # set by `run --metrics-port`
        self._outage: Outage | None = None

    def reconfigure(self, config: Config) -> None:
        """A reloaded config takes effect at the next tick."""
        self.config = config
        self.lease.heartbeat_seconds = config.daemon.heartbeat_interval_seconds

    def add_duty(self, duty: Duty) -> None:
        """Run another periodic task (the metrics sample)."""
        self.duties.append(duty)

    @property
    def conn(self) -> Connection | None:
        """This thread's connection, if it has one now."""
        return self._conn

    # --- the thread ------------------------------------------------------------------------------------

    def run(self) -> None:
        """Tick until halted."""
        while not self.halt.is_set():
            self.state.poke.wait(TICK_SECONDS)
            self.state.poke.clear()
            self.in_tick = True
            try:
                self.tick(time.monotonic())
            except DB_UNAVAILABLE as exc:
                self._db_failed(exc)
                self.halt.wait(0.5)
            except Exception as exc:  # a duty failing must not kill the thread that heartbeats
                hint = {"hint": PREPARED_LOST_HINT} if isinstance(exc, PREPARED_LOST) else {}
                self.log.error("housekeeping_failed", error=repr(exc)[:500], **hint)
                self._drop_conn()
                self.halt.wait(0.5)
            else:
                if self._outage is not None:
                    self._db_back()
            finally:
                self.in_tick = False
        self._drop_conn()

    def tick(self, now: float) -> None:
        """The lease first (an inline job past the grace ends the daemon), then the duties that are due."""
        expired = self.lease.supervise_inline(now)
        if expired is not None:
            try:
                conn: Connection | None = self._connection()
            except DB_UNAVAILABLE:
                conn = None
            self.on_grace_expired(conn, expired)
            return
        conn = self._connection()
        running = self.lease.due(now)
        if running is not None:
            self.lease.heartbeat(conn, running)
        if self.state.pauses_dirty.is_set():
            self._due[self.pauses.name] = now
        for duty in self.duties:
            if now >= self._due.get(duty.name, 0.0):
                self._due[duty.name] = now + duty.interval()
                try:
                    duty.run_once(conn)
                except DB_UNAVAILABLE:
                    self._due[duty.name] = now  # the first thing done once the database answers again
                    raise

    def _db_failed(self, exc: BaseException) -> None:
        """A statement failed for want of the server or of a lock: warn now and then, try again soon."""
        if self._outage is None:
            self._outage = Outage()
            self.notifier.status("db unavailable")
        self._outage.failed(self.log, exc, where="housekeeper")
        self.lease.check_soon()
        conn = self._conn
        if not (waited_too_long(exc) and conn is not None and not (conn.closed or conn.broken)):
            self._drop_conn()  # a statement that waited too long leaves a good connection behind

    def _db_back(self) -> None:
        assert self._outage is not None
        self.log.info("db_reconnected", where="housekeeper", down_seconds=round(self._outage.seconds, 1))
        self._outage = None
        if self.metrics is not None:
            self.metrics.db_reconnected("housekeeper")
        if self.state.grace_deadline is None:
            self.notifier.status(self.state.status_text())

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.config, purpose="housekeeper")
        return self._conn

    def _drop_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a broken connection may raise; it is gone either way
                self.log.debug("close_failed")
            self._conn = None

    # --- duties others call -----------------------------------------------------------------------------

    def worker_row(self, conn: Connection) -> None:
        """Refresh this daemon's job_workers row now."""
        WorkerRow(self).run_once(conn)

    def unpark(self, conn: Connection) -> int:
        """Bring back parked jobs that may run now (behind the triggers that do it as jobs end)."""
        c = self.config
        count = store.unpark_runnable(conn, c.job_processing.queue_priority, c.user_limit, UNPARK_BATCH)
        if count:
            self.log.info("jobs_unparked", count=count)
            store.notify_jobs(conn, "unparked")
        return count

    def rescue(self, conn: Connection, *, restarted_worker: str | None = None) -> list[str]:
        """Rescue stale jobs (and, at start, those an earlier run of this worker id left); their ids."""
        c = self.config
        rows = store.rescue_stale_jobs(
            conn,
            worker_id=self.worker_id,
            stale_after_seconds=c.daemon.stale_after_seconds,
            max_processing_seconds=c.job_processing.max_processing_time_minutes * 60,
            retry_failed_jobs=c.scheduler_settings.retry_failed_jobs,
            default_max_retries=c.scheduler_settings.max_retries,
            restarted_worker=restarted_worker,
            # alive whatever their heartbeat says: never rescued by this daemon
            held_ids=list(self.state.held),
        )
        if not rows:
            return []
        # a rescued job is claimable again, and a failed or cancelled one freed its user's slot: every
        # idle daemon, this one included, looks at once
        store.notify_jobs(conn, "rescued")
        overdue = [str(r["id"]) for r in rows if r["overdue"]]
        self.log.warning(
            "jobs_rescued",
            count=len(rows),
            job_ids=[str(r["id"]) for r in rows][:20],
            from_workers=sorted({r["locked_by"] for r in rows}),
            statuses=sorted({r["status"] for r in rows}),
        )
        if self.metrics is not None:
            self.metrics.jobs_rescued([r["status"] for r in rows])
        if overdue:
            # the ceiling of max_processing_time_minutes was hit: loud on purpose
            self.log.error("jobs_over_max_processing_time", job_ids=overdue[:20], count=len(overdue))
        return [str(r["id"]) for r in rows]
