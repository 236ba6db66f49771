"""The daemon's second thread: job heartbeat, worker row, rescue, pauses, grace supervision.

It has its own connection, so that the job heartbeat keeps flowing while the main thread runs a job.
Periodic duties run on their own timers here, never per job. Its statements can wait for other
sessions' locks (up to database.lock_timeout_seconds each), so the systemd watchdog is pinged from a
thread of its own (jobcron/watchdog.py), by the rule in `loop_alive`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobcron import store
from jobcron.config import Config
from jobcron.daemon.sdnotify import Notifier
from jobcron.db import DB_UNAVAILABLE, Connection, Outage, connect, waited_too_long
from jobcron.models import ClaimedJob
from jobcron.schedules import firing
from jobcron.workflows.base import WorkflowContext

if TYPE_CHECKING:
    from jobcron.daemon.metrics import Metrics

TICK_SECONDS = 0.05
MAX_BATCHES_PER_RUN = 20
RETENTION_BUDGET_SECONDS = 1.0
RETENTION_BACKLOG_SECONDS = 0.5
PAUSE_REFRESH_SECONDS = 1.0
UNPARK_BATCH = 10_000


@dataclass
class Running:
    """The job the main thread is running now."""

    job: ClaimedJob
    ctx: WorkflowContext
    since: float = field(default_factory=time.monotonic)
    lease_lost: bool = False
    next_heartbeat: float = 0.0
    # process mode: the main thread supervises the child (grace, timeout, cancel); inline: this thread does
    supervised_by_main: bool = False
    force: bool = False
    timeout_seconds: float | None = None
    timeout_reported: bool = False


@dataclass
class Duty:
    """A periodic task with its own interval."""

    name: str
    interval: Callable[[], float]
    run: Callable[[Connection], None]
    due: float = 0.0


class Housekeeper(threading.Thread):
    """Runs the timers of one daemon on a connection of its own."""

    def __init__(
        self,
        config: Config,
        worker_id: str,
        log: Any,
        notifier: Notifier,
        *,
        on_grace_expired: Callable[[Connection | None, Running], None],
    ) -> None:
        super().__init__(name="jobcron-housekeeper", daemon=True)
        self.config = config
        self.worker_id = worker_id
        self.log = log
        self.notifier = notifier
        self.on_grace_expired = on_grace_expired
        self.halt = threading.Event()
        self.poke = threading.Event()
        self._lock = threading.Lock()
        self._running: Running | None = None
        self.paused: tuple[str, ...] = ()
        self.pauses_dirty = threading.Event()
        self.pauses_dirty.set()
        self.grace_deadline: float | None = None
        self.state = "starting"
        self.loop_tick = time.monotonic()
        # set while the main loop waits for a statement: the server ends it within the lock timeout
        self.loop_db_since: float | None = None
        self.in_tick = False  # this thread's statements may wait too (the stop deadline cancels them)
        self.retention_backlog = False
        self.duties: list[Duty] = [
            Duty(
                "worker_heartbeat",
                lambda: self.config.daemon.worker_heartbeat_seconds,
                self._worker_heartbeat,
            ),
            Duty("rescue", lambda: self.config.daemon.rescue_interval_seconds, self._rescue),
            Duty(
                "retention",
                lambda: (
                    RETENTION_BACKLOG_SECONDS
                    if self.retention_backlog
                    else self.config.daemon.retention_interval_seconds
                ),
                self._retention,
            ),
            Duty("schedules", lambda: self.config.daemon.schedule_check_seconds, self._schedules),
        ]
        self._conn: Connection | None = None
        self.metrics: Metrics | None = None  # set by `run --metrics-port`
        self.on_pauses_changed: Callable[[], None] | None = None
        self._next_pause_refresh = 0.0
        self._outage: Outage | None = None
        # the jobs this daemon holds (running, being recorded, claimed next): alive whatever their
        # heartbeat says, so never rescued by this daemon
        self.held_ids: Callable[[], list[str]] = list

    # --- called from the main thread ----------------------------------------------------------------

    def set_running(
        self,
        job: ClaimedJob,
        ctx: WorkflowContext,
        *,
        supervised_by_main: bool,
        timeout_seconds: float | None,
    ) -> Running:
        """Start supervising a job."""
        running = Running(
            job,
            ctx,
            next_heartbeat=time.monotonic() + self.config.daemon.heartbeat_interval_seconds,
            supervised_by_main=supervised_by_main,
            timeout_seconds=timeout_seconds,
        )
        with self._lock:
            self._running = running
        self.state = "running"
        self.notifier.status(f"running job {job.id} ({job.job_type})")
        return running

    def clear_running(self) -> None:
        """The job is over."""
        with self._lock:
            self._running = None
        self.state = "idle"
        if self.grace_deadline is None:
            self.notifier.status("idle")

    def running(self) -> Running | None:
        """The running job, if any."""
        with self._lock:
            return self._running

    def status_text(self) -> str:
        """The STATUS= line for what the daemon does now."""
        running = self.running()
        return "idle" if running is None else f"running job {running.job.id} ({running.job.job_type})"

    def loop_alive(self, now: float) -> bool:
        """The watchdog's rule: the loop ticked within WatchdogSec, or it is busy with a job whose lease it
        still holds, or it waits for a statement the server ends by itself (the lock timeout)."""
        interval = self.notifier.watchdog_seconds
        if interval is None or now - self.loop_tick < interval:
            return True
        running = self.running()
        if running is not None and not running.lease_lost:
            return True
        since = self.loop_db_since
        d = self.config.database
        # a connection attempt, then a statement waiting for a lock: both end by themselves within this
        return (
            since is not None and now - since < d.connect_timeout_seconds + d.lock_timeout_seconds + interval
        )

    def cancel_requested(self, payload: str) -> None:
        """A cancel notification arrived ("ID" or "ID:force"): stop the job at once if it is ours."""
        job_id, _, mode = payload.partition(":")
        running = self.running()
        if running is not None and running.job.id == job_id:
            running.force = running.force or mode == "force"
            running.ctx.cancel_event.set()

    def add_duty(self, duty: Duty) -> None:
        """Register another periodic task (schedules, retention)."""
        self.duties.append(duty)

    # --- the thread ------------------------------------------------------------------------------------

    def run(self) -> None:
        """Tick until halted."""
        while not self.halt.is_set():
            self.poke.wait(TICK_SECONDS)
            self.poke.clear()
            try:
                self._timed_tick()
            except DB_UNAVAILABLE as exc:
                self._db_failed(exc)
                self.halt.wait(0.5)
            except Exception as exc:  # a duty failing must not kill the thread that heartbeats
                self.log.error("housekeeping_failed", error=repr(exc)[:500])
                self._drop_conn()
                self.halt.wait(0.5)
            else:
                if self._outage is not None:
                    self._db_back()
        self._drop_conn()

    def _timed_tick(self) -> None:
        self.in_tick = True
        try:
            self._tick()
        finally:
            self.in_tick = False

    @property
    def conn(self) -> Connection | None:
        """This thread's connection, if it has one now."""
        return self._conn

    def _db_failed(self, exc: BaseException) -> None:
        """A statement failed for want of the server or of a lock: warn now and then, try again soon."""
        if self._outage is None:
            self._outage = Outage()
            self.notifier.status("db unavailable")
        self._outage.failed(self.log, exc, where="housekeeper")
        # after an outage (a server crash may have lost the claim, a rescue or an operator's reset taken
        # the job) find out at once whether the running job is still ours, not a heartbeat period later
        running = self.running()
        if running is not None:
            running.next_heartbeat = 0.0
        conn = self._conn
        if not (waited_too_long(exc) and conn is not None and not (conn.closed or conn.broken)):
            self._drop_conn()  # a statement that waited too long leaves a good connection behind

    def _db_back(self) -> None:
        assert self._outage is not None
        self.log.info("db_reconnected", where="housekeeper", down_seconds=round(self._outage.seconds, 1))
        self._outage = None
        if self.metrics is not None:
            self.metrics.db_reconnected("housekeeper")
        if self.grace_deadline is None:
            self.notifier.status(self.status_text())

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

    def _tick(self) -> None:
        now = time.monotonic()
        running = self.running()
        if running is not None and not running.supervised_by_main:
            self._inline_timeout(now, running)
        if (
            self.grace_deadline is not None
            and running is not None
            and not running.supervised_by_main
            and now >= self.grace_deadline
        ):
            conn = None
            try:
                conn = self._connection()
            except DB_UNAVAILABLE:
                conn = None
            self.on_grace_expired(conn, running)
            return
        conn = self._connection()
        if running is not None and now >= running.next_heartbeat and not running.lease_lost:
            self._heartbeat_job(conn, running)
        if self.pauses_dirty.is_set() or now >= self._next_pause_refresh:
            self.pauses_dirty.clear()
            paused, self.paused = self.paused, tuple(store.paused_types(conn))
            self._next_pause_refresh = now + PAUSE_REFRESH_SECONDS
            if paused != self.paused and self.on_pauses_changed is not None:
                self.on_pauses_changed()  # a resumed daemon must not sleep until its next poll
        for duty in self.duties:
            if now >= duty.due:
                duty.due = now + duty.interval()
                try:
                    duty.run(conn)
                except DB_UNAVAILABLE:
                    duty.due = now  # the first thing done once the database answers again
                    raise

    def _inline_timeout(self, now: float, running: Running) -> None:
        if running.timeout_reported or running.timeout_seconds is None:
            return
        if now - running.since >= running.timeout_seconds:
            running.timeout_reported = True
            # a thread cannot be killed: ask the workflow to stop, and say plainly that it may not
            running.ctx.cancel_event.set()
            self.log.error(
                "job_timeout_not_enforceable",
                job_id=running.job.id,
                timeout_seconds=running.timeout_seconds,
                hint="inline mode can only ask the workflow to stop; use execution_mode process",
            )

    def _heartbeat_job(self, conn: Connection, running: Running) -> None:
        running.next_heartbeat = time.monotonic() + self.config.daemon.heartbeat_interval_seconds
        cancel = store.heartbeat_job(conn, running.job.id, running.job.lease_token)
        if cancel is None:
            # rescued, reset by an operator (seed 003's emergency UPDATE) or deleted: the job may already
            # run elsewhere, and this run can record nothing. A job process is terminated at once (force),
            # not after cancel_grace_seconds; an inline workflow can only be asked to stop.
            running.lease_lost = True
            running.force = True
            running.ctx.cancel_event.set()
            self.log.warning("lease_lost", job_id=running.job.id, where="heartbeat")
        elif cancel:
            running.force = running.force or cancel == "force"
            running.ctx.cancel_event.set()

    def _worker_heartbeat(self, conn: Connection) -> None:
        running = self.running()
        current = running.job.id if running else None
        # the row is gone: an operator removed it, or this daemon is stopping and unregistered itself
        # (then it must stay gone)
        if store.worker_heartbeat(conn, self.worker_id, self.state, current) == 0 and not self.halt.is_set():
            store.worker_register(conn, self.worker_id, *_host_pid(), self.state, _version())

    def _retention(self, conn: Connection) -> None:
        days = self.config.scheduler_settings.cleanup_completed_jobs_days
        if days <= 0:
            return  # 0 keeps finished jobs forever
        deleted = 0
        batch = self.config.daemon.retention_batch_size
        began = time.monotonic()
        self.retention_backlog = False
        # small batches keep each delete short; a time budget per run keeps the heartbeats flowing,
        # and a backlog brings the next run forward so pruning keeps up with a busy queue
        while True:
            n = store.prune_finished_jobs(conn, days * 86400, batch)
            deleted += n
            if n < batch or self.halt.is_set():
                break
            if time.monotonic() - began >= RETENTION_BUDGET_SECONDS:
                self.retention_backlog = True
                break
        if deleted:
            self.log.info("jobs_pruned", count=deleted, older_than_days=days)

    def _schedules(self, conn: Connection) -> None:
        catch_up = self.config.daemon.schedule_catch_up_seconds
        # more due than one batch (many schedules, or a long downtime): keep going, within a cap
        for _ in range(MAX_BATCHES_PER_RUN):
            firings = firing.fire_due(conn, self.worker_id, catch_up_seconds=catch_up)
            for f in firings:
                at = f.occurrence_at.isoformat()
                fields = {"schedule_id": f.schedule_id, "schedule": f.name, "occurrence_at": at}
                if f.outcome == firing.FIRED:
                    self.log.info("schedule_fired", job_id=f.job_id, **fields)
                elif f.outcome == firing.SKIPPED:
                    self.log.info("schedule_occurrence_skipped", **fields)
                elif f.outcome == firing.FAILED:
                    self.log.error("schedule_fire_failed", error=f.error, **fields)
                elif f.outcome == firing.INVALID:
                    self.log.error("schedule_disabled_invalid", error=f.error, **fields)
            if len(firings) < firing.FIRE_BATCH or self.halt.is_set():
                break

    def _rescue(self, conn: Connection) -> None:
        self.rescue(conn)
        self.unpark(conn)

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
            held_ids=self.held_ids(),
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


def _host_pid() -> tuple[str, int]:
    import os
    import socket

    return socket.gethostname(), os.getpid()


def _version() -> str:
    from jobcron import __version__

    return __version__
