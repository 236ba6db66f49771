"""The daemon: `run_once()` is one claim-run-record cycle; `run()` is the loop around it."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import structlog

from jobcron import migrate, store
from jobcron.config import Config, config_as_dict
from jobcron.daemon.child import ChildRunner, Supervision
from jobcron.daemon.housekeeper import Housekeeper, Running
from jobcron.daemon.listener import Listener
from jobcron.daemon.runner import (
    RunPolicy,
    check_job,
    error_record,
    failed_outcome,
    interrupted_outcome,
    run_inline,
    workflow_settings,
)
from jobcron.daemon.sdnotify import Notifier
from jobcron.daemon.watchdog import Watchdog
from jobcron.db import (
    DB_UNAVAILABLE,
    Connection,
    DatabaseRefused,
    Outage,
    connect,
    retrying,
    scrub,
    waited_too_long,
)
from jobcron.errors import DatabaseUnavailable, PermanentError, WorkerIdTaken
from jobcron.models import ClaimedJob, JobStatus, Outcome
from jobcron.workflows import Registry
from jobcron.workflows.base import FileInfo, WorkflowContext

if TYPE_CHECKING:
    from jobcron.daemon.metrics import Metrics

T = TypeVar("T")
EXIT_CLEAN = 0
RECHECK_AFTER_BUSY_SECONDS = 0.05
# a claim that lost the race for a user's slot is tried again at once, this many times
SLOT_RACE_TRIES = 3
# after SIGTERM, how long past the grace period a database call still waits for the server
STOP_DB_WAIT_SECONDS = 5.0

_OUTCOME_EVENTS = {
    JobStatus.COMPLETED: "job_completed",
    JobStatus.FAILED: "job_failed",
    JobStatus.CANCELLED: "job_cancelled",
}


def default_worker_id() -> str:
    """host-pid-random: unique per process, readable in `job_cron workers`."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


class Worker:
    """One daemon: a main connection for claim/record, a listener and a housekeeper thread."""

    def __init__(
        self,
        config: Config,
        *,
        worker_id: str | None = None,
        max_jobs: int | None = None,
        once: bool = False,
        reload_config: Callable[[], Config] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.worker_id = worker_id or default_worker_id()
        self.max_jobs = max_jobs
        self.once = once
        self.reload_config = reload_config
        self.notifier = notifier or Notifier({})
        self.log = structlog.get_logger().bind(worker_id=self.worker_id)
        self.registry = Registry(config.workflows)
        self.policy = RunPolicy.from_config(config)
        self.settings = workflow_settings(config)
        self.wake = threading.Event()
        self.stop_event = threading.Event()  # first signal: stop claiming, let the job finish
        self.hard_stop = threading.Event()  # second signal or grace over: stop waiting
        self.reload_requested = threading.Event()
        self.jobs_done = 0
        self._conn: Connection | None = None
        self._next: ClaimedJob | None = None
        # jobs this worker holds and will record (running, being recorded, claimed next): a reconnect
        # must never put these back, nor this daemon's own rescue take them; any other row locked by
        # this worker is a claim whose answer was lost. Replaced, never changed in place: the
        # housekeeper's thread reads it.
        self._held: frozenset[str] = frozenset()
        self._outage: Outage | None = None  # set while the main connection cannot reach the server
        # the main connection was lost (not merely a statement ended for waiting): the new one must take
        # the worker id again and put back claims whose answer was lost with the old one
        self._conn_lost = False
        self._gave_up = False  # --once stopped waiting for the database: the rest may not wait either
        self.housekeeper = Housekeeper(
            config, self.worker_id, self.log, self.notifier, on_grace_expired=self._grace_expired
        )
        self.housekeeper.on_pauses_changed = self.wake.set
        self.housekeeper.held_ids = lambda: list(self._held)
        self.watchdog = Watchdog(
            self.notifier,
            alive=self.housekeeper.loop_alive,
            stopping=lambda: self.stop_event.is_set(),
            overdue=self._interrupt_overdue_statements,
        )
        self._interrupted_at: float | None = None
        self.listener: Listener | None = None
        self.children: ChildRunner | None = None
        self.on_job_start: Callable[[ClaimedJob], None] | None = None  # test hook
        self.metrics: Metrics | None = None  # counters only, set by `run --metrics-port`

    # --- control ----------------------------------------------------------------------------------------

    def request_stop(self, reason: str = "signal") -> None:
        """First call: stop claiming and let the running job finish within the grace period; second: cut it short."""
        if self.stop_event.is_set():
            self.hard_stop.set()
            self.housekeeper.grace_deadline = time.monotonic()
        else:
            self.stop_event.set()
            self.housekeeper.grace_deadline = time.monotonic() + self.config.daemon.shutdown_grace_seconds
        running = self.housekeeper.running()
        if running is not None:
            running.ctx.stop_event.set()
        self.wake.set()
        self.housekeeper.poke.set()
        self.watchdog.poke.set()

    def request_reload(self) -> None:
        """SIGHUP: reload the config at the next cycle."""
        self.reload_requested.set()
        self.wake.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self.stop_event.is_set()

    # --- connections -----------------------------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.config, purpose="worker", generic_plans=True)
        return self._conn

    def _db(self, fn: Callable[[Connection], T], *, must_finish: bool = False) -> T:
        """Run fn on the main connection, retrying with backoff while the server is unavailable or a
        statement cannot get its locks (each waits at most database.lock_timeout_seconds)."""
        stop = self.hard_stop if must_finish else self.stop_event
        if self._outage is None and self._conn is not None and not self._conn.closed:
            try:
                return self._call(fn, self._conn)  # the hot path: no retry machinery unless something failed
            except DB_UNAVAILABLE as exc:
                self._db_failed(exc)
                if stop.is_set():
                    raise  # stopping: a statement that waited in vain is not tried again
        for attempt in retrying(stop, on_retry=self._on_db_retry, deadline=self._db_deadline):
            with attempt:
                conn = self._connection()
                if self._conn_lost:
                    self._after_reconnect(conn)
                    self._conn_lost = False
                result = self._call(fn, conn)
                # back only once a statement went through: a connection alone proves nothing when
                # another session's lock is what stops the statements
                if self._outage is not None:
                    self._db_back()
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, fn: Callable[[Connection], T], conn: Connection) -> T:
        # while a statement waits for the server, the watchdog knows the loop is waiting, not hung
        self.housekeeper.loop_db_since = time.monotonic()
        try:
            return fn(conn)
        finally:
            self.housekeeper.loop_db_since = None

    def _on_db_retry(self, state: Any) -> None:
        self.housekeeper.loop_tick = time.monotonic()  # retrying the database is not a hung loop
        self._db_failed(state.outcome.exception() if state.outcome else None)

    def _db_failed(self, exc: BaseException | None) -> None:
        if self._outage is None:
            self._outage = Outage()
            self.notifier.status("db unavailable")
        self._outage.failed(self.log, exc)
        conn = self._conn
        if exc is not None and waited_too_long(exc) and conn is not None and not (conn.closed or conn.broken):
            return  # the statement was rolled back and the connection is fine: keep it (and its worker-id lock)
        self._drop_conn()
        self._conn_lost = True

    def _db_back(self) -> None:
        assert self._outage is not None
        self.log.info("db_reconnected", down_seconds=round(self._outage.seconds, 1))
        self._outage = None
        if self.metrics is not None:
            self.metrics.db_reconnected("worker")
        if self.housekeeper.grace_deadline is None:  # a stop's STATUS=stopping stays
            self.notifier.status(self.housekeeper.status_text())

    def _interrupt_overdue_statements(self, now: float) -> None:
        """Past the stop's deadline, cancel the statements that still wait (every second while they do).

        A lock timeout ends such a wait by itself; this holds where none is set (a transaction-mode pooler,
        lock_timeout_seconds 0) and keeps the stop within the grace plus STOP_DB_WAIT_SECONDS. A cancel
        request that arrives as a statement has just ended cancels the next one instead, which is retried
        like any statement the server ended: nothing is half-written.
        """
        grace = self.housekeeper.grace_deadline
        if grace is None or now < grace + STOP_DB_WAIT_SECONDS:
            return
        if self._interrupted_at is not None and now - self._interrupted_at < 1.0:
            return
        busy = [
            (name, conn)
            for name, conn, waiting in (
                ("worker", self._conn, self.housekeeper.loop_db_since is not None),
                ("housekeeper", self.housekeeper.conn, self.housekeeper.in_tick),
            )
            if waiting and conn is not None and not conn.closed
        ]
        if not busy:
            return
        self._interrupted_at = now
        for name, conn in busy:
            self.log.warning("db_statement_interrupted", where=name, reason="stop deadline passed")
            threading.Thread(target=_cancel, args=(conn,), daemon=True).start()

    def _db_deadline(self) -> float | None:
        """When a database call stops waiting for the server: never, unless --once or a stop sets a limit."""
        if self._gave_up:
            return 0.0
        limits = []
        if self.once and self._outage is not None:
            limits.append(self._outage.since + self.config.daemon.once_db_wait_seconds)
        if self.housekeeper.grace_deadline is not None:
            limits.append(self.housekeeper.grace_deadline + STOP_DB_WAIT_SECONDS)
        return min(limits, default=None)

    def _after_reconnect(self, conn: Connection) -> None:
        """Take the worker id again, and put back claims whose commit was never seen."""
        if self.config.database.prepared_statements and not store.worker_id_lock(conn, self.worker_id):
            # another daemon started under this id while we were cut off: two would undo each other
            self.log.error("worker_id_taken", hint="give each daemon its own --worker-id; stopping")
            # twice: no grace period, the jobs this daemon holds were rescued by the other one
            self.request_stop("worker id taken")
            self.request_stop("worker id taken")
        # every job this worker holds (running, being recorded, claimed next) stays; any other row
        # locked by it comes from a claim whose answer was lost with the connection
        released = store.release_worker_jobs(conn, self.worker_id, list(self._held))
        if released:
            self.log.info("jobs_released", job_ids=released)
            store.notify_jobs(conn, "released")

    def _drop_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # the connection is already broken
                self.log.debug("close_failed")
            self._conn = None

    # --- one cycle ---------------------------------------------------------------------------------------

    def _claim_params(self) -> store.ClaimParams:
        return store.ClaimParams(
            worker_id=self.worker_id,
            order=self.config.job_processing.queue_priority,
            user_limit=self.config.user_limit,
            max_metadata_bytes=self.config.job_processing.max_metadata_bytes,
        )

    def _may_claim(self) -> bool:
        if self.stopping or "*" in self.housekeeper.paused:
            return False
        return self.max_jobs is None or self.jobs_done < self.max_jobs

    def claim(self) -> ClaimedJob | None:
        """Claim one job; look again at once while a look only parked blocked jobs (the next one goes
        further), or lost a slot race with another daemon."""

        def attempt(conn: Connection) -> ClaimedJob | None:
            params = self._claim_params()
            races = 0
            while not self.stopping:
                try:
                    claimed = store.claim(conn, params)
                except psycopg.errors.UniqueViolation:
                    races += 1  # another daemon took the same user slot at the same instant
                    if races < SLOT_RACE_TRIES:
                        continue
                    return None
                if claimed.job is not None or not claimed.parked:
                    return claimed.job
                # every look parks at least one job, so this ends; the loop is working, not stuck
                self.housekeeper.loop_tick = time.monotonic()
            return None

        job = self._db(attempt)
        if job is not None:
            self._held |= {job.id}
        return job

    def run_once(self) -> bool:
        """Claim (or take the job claimed with the last record), run and record one job; False when idle."""
        self.housekeeper.loop_tick = time.monotonic()
        job, self._next = self._next, None
        if job is None:
            if not self._may_claim():
                return False
            job = self.claim()
            if job is None:
                return False
        outcome, running = self._execute(job)
        self.jobs_done += 1
        self._record(job, outcome, running, claim_next=self._may_claim())
        return True

    def _execute(self, job: ClaimedJob) -> tuple[Outcome, Running]:
        structlog.contextvars.bind_contextvars(
            job_id=job.id, job_type=job.job_type, user_id=job.user_id, attempt=job.attempts
        )
        ctx = WorkflowContext(
            job_id=job.id,
            job_type=job.job_type,
            attempt=job.attempts,
            user_id=job.user_id,
            business_description=job.business_description,
            metadata={},
            file=None,
            logger=self.log,
            settings=self.settings,
            created_at=job.created_at,
        )
        if job.cancel_requested:
            ctx.cancel_event.set()
        process_mode = self.config.execution_mode_for(job.job_type) == "process"
        timeout = float(job.timeout_seconds or self.config.scheduler_settings.job_timeout_minutes * 60)
        running = self.housekeeper.set_running(
            job, ctx, supervised_by_main=process_mode, timeout_seconds=timeout
        )
        self.log.debug("job_claimed")
        if self.metrics is not None:
            self.metrics.job_claimed(job.job_type)
        if self.on_job_start is not None:
            self.on_job_start(job)
        try:
            ctx.metadata = check_job(job, self.config.job_processing.max_metadata_bytes)
            workflow = self.registry.get(job.job_type)
            if job.file_id is not None:
                ctx.file = self._load_file(job.file_id)
            if process_mode:
                outcome = self._children().run(
                    job, ctx, self.worker_id, self.policy, self._supervision(running)
                )
            else:
                outcome = run_inline(workflow, ctx, job, self.policy, self.worker_id)
        except PermanentError as exc:
            outcome = failed_outcome(exc, job, self.policy, self.worker_id)
        finally:
            self.housekeeper.clear_running()
        return outcome, running

    def _warm_up_job_process(self) -> None:
        """Start the job process now, not at the first job: it imports while the daemon idles."""
        p = self.config.job_processing
        if p.execution_mode == "process" or "process" in p.execution_mode_by_type.values():
            self._children().start()

    def _children(self) -> ChildRunner:
        if self.children is None:
            self.children = ChildRunner(self.config, self.policy, self.log)
        return self.children

    def _supervision(self, running: Running) -> Supervision:
        c = self.config
        return Supervision(
            timeout_seconds=running.timeout_seconds,
            max_processing_seconds=c.job_processing.max_processing_time_minutes * 60,
            cancel_grace_seconds=c.daemon.cancel_grace_seconds,
            force_cancel=lambda: running.force,
            stop_deadline=lambda: self.housekeeper.grace_deadline,
        )

    def _load_file(self, file_id: str) -> FileInfo | None:
        def load(conn: Connection) -> dict[str, Any] | None:
            store.mark_file_processing(conn, file_id)
            return store.get_file(conn, file_id)

        row = self._db(load)
        if row is None:
            return None
        return FileInfo(str(row["id"]), row["file_path"], row["original_name"], row["status"])

    def _record(self, job: ClaimedJob, outcome: Outcome, running: Running, *, claim_next: bool) -> None:
        """Write the outcome under the lease, and claim the next job in the same transaction when allowed."""
        try:
            recorded, self._next = self._db(
                lambda conn: self._write(conn, job, outcome, claim_next), must_finish=True
            )
        except psycopg.Error as exc:
            if isinstance(exc, DB_UNAVAILABLE):
                raise
            # the outcome itself could not be stored (e.g. a value the database refuses): fail the job with why
            self.log.error("job_record_failed", error=str(exc).strip()[:500])
            fallback = failed_outcome(
                exc,
                job,
                self.policy,
                self.worker_id,
                error=error_record(exc, job, self.worker_id, "RecordError"),
                permanent=True,
            )
            recorded, self._next = self._db(
                lambda conn: self._write(conn, job, fallback, False), must_finish=True
            )
            outcome = fallback
        if not recorded:
            state = self._db(
                lambda conn: store.job_lease_state(conn, job.id, job.lease_token), must_finish=True
            )
            # our own write whose commit we did not see (the connection dropped) is not a lost lease:
            # the row carries this lease's record mark (a rescue, release or reset never leaves it)
            if not (state and state["ours"] and state["status"] != JobStatus.PROCESSING):
                self._let_go(job)
                self.log.warning("lease_lost", status=state["status"] if state else None)
                structlog.contextvars.clear_contextvars()
                return
        self._let_go(job)
        self._log_outcome(outcome, running)
        structlog.contextvars.clear_contextvars()

    def _let_go(self, job: ClaimedJob) -> None:
        # the same job may be held again already: an operator's reset made it pending, and the
        # claim that shared this record's transaction took it as the next job
        if self._next is None or self._next.id != job.id:
            self._held -= {job.id}

    def _write(
        self, conn: Connection, job: ClaimedJob, outcome: Outcome, claim_next: bool
    ) -> tuple[bool, ClaimedJob | None]:
        if not claim_next:
            recorded = store.finish(conn, job, outcome)
            if recorded and job.user_id is not None:
                # the user's next job may run now and this daemon will not claim it: wake the others
                store.notify_jobs(conn, "slot")
            return recorded, None
        try:
            recorded, claimed = store.finish_and_claim(conn, job, outcome, self._claim_params())
        except psycopg.Error as exc:
            if isinstance(exc, DB_UNAVAILABLE):
                raise
            # the claim half failed (most often a slot race with another daemon) and took the record
            # half down with it: record alone; only an error of the record itself fails the job
            return store.finish(conn, job, outcome), None
        # nothing claimed but blocked jobs parked: the loop's next cycle claims again at once
        nxt = claimed.job
        if nxt is not None:
            self._held |= {nxt.id}
        return recorded, nxt

    def _log_outcome(self, outcome: Outcome, running: Running) -> None:
        duration_ms = round((time.monotonic() - running.since) * 1000, 2)
        if self.metrics is not None:
            self.metrics.job_outcome(running.job.job_type, outcome, duration_ms / 1000)
        if outcome.status == JobStatus.PENDING and outcome.uncharge:
            self.log.info("job_interrupted", duration_ms=duration_ms)
        elif outcome.status == JobStatus.PENDING:
            self.log.warning(
                "job_retry_scheduled",
                duration_ms=duration_ms,
                delay_seconds=round(outcome.delay_seconds, 2),
                error=outcome.error_message,
            )
        elif outcome.status == JobStatus.COMPLETED:
            self.log.info("job_completed", duration_ms=duration_ms, insights=len(outcome.insights))
        else:
            self.log.warning(
                _OUTCOME_EVENTS[outcome.status], duration_ms=duration_ms, error=outcome.error_message
            )

    def _grace_expired(self, conn: Connection | None, running: Running) -> None:
        """Called by the housekeeper when the grace period ends with an inline job still running."""
        self.log.warning("shutdown_grace_expired", job_id=running.job.id)
        outcome = interrupted_outcome(running.job, self.worker_id, "shutdown grace period expired")
        if conn is not None:
            try:
                store.finish(conn, running.job, outcome)
                self._release_prefetched(conn)
                store.worker_unregister(conn, self.worker_id)
            except psycopg.Error as exc:
                self.log.error("put_back_failed", error=str(exc).strip()[:200])
        self.log.info("job_interrupted", job_id=running.job.id)
        self.log.info("worker_stopped", jobs_done=self.jobs_done, exit_code=EXIT_CLEAN)
        self.notifier.stopping()
        # a thread cannot be killed: the job was put back, so ending the process is the interruption
        os._exit(EXIT_CLEAN)

    def _release_prefetched(self, conn: Connection) -> None:
        nxt, self._next = self._next, None
        if nxt is not None:
            self._held -= {nxt.id}
            store.finish(
                conn, nxt, interrupted_outcome(nxt, self.worker_id, "daemon stopping before it started")
            )

    # --- the loop ----------------------------------------------------------------------------------------

    def start(self) -> bool:
        """Connect, check the schema, announce the worker and start the helper threads.

        While the server cannot be reached this waits (warning now and then), up to
        daemon.once_db_wait_seconds under --once; a refusal no retry can change (credentials, database
        name, startup options) raises DatabaseRefused at once. False: stopped before the server answered.
        """
        try:
            for attempt in retrying(
                self.stop_event, on_retry=self._on_db_retry, deadline=self._db_deadline, refusals=False
            ):
                with attempt:
                    self._announce(self._connection())
        except DatabaseRefused:
            raise
        except DB_UNAVAILABLE:
            if self.stopping:
                return False
            raise
        if self._outage is not None:
            self._db_back()
        self._conn_lost = False  # the start's connection took the id and rescued: nothing to resync
        self._start_threads()
        return True

    def _announce(self, conn: Connection) -> None:
        """The start's database steps; each may run again on a new connection after a failure."""
        migrate.check(conn)
        # two live daemons under one id would rescue and release each other's jobs: refuse to start
        # (behind a transaction-mode pooler a session lock cannot be held: documented instead)
        if self.config.database.prepared_statements and not store.worker_id_lock(conn, self.worker_id):
            raise WorkerIdTaken(
                f"another daemon is running as worker id {self.worker_id!r}; give each daemon its own --worker-id"
            )
        store.worker_register(conn, self.worker_id, *_host_pid(), "idle", _version())
        # jobs an earlier run under this id left processing died with it: rescued now and charged
        # an attempt, so a job that kills its daemon cannot make it crash-loop forever
        rescued = self.housekeeper.rescue(conn, restarted_worker=self.worker_id)
        if rescued:
            self.log.warning("jobs_rescued_at_start", job_ids=rescued)
        if not self.config.job_processing.auto_start_processing:
            # seed 000's meaning: processing does not start by itself when the system starts; a
            # daemon restarting into a live fleet must not pause what an operator resumed
            alive_within = 3 * self.config.daemon.worker_heartbeat_seconds
            if store.pause_all_if_absent(conn, self.worker_id, alive_within):
                self.log.warning("worker_started_paused", hint="run `job_cron resume` to start processing")
        self.housekeeper.paused = tuple(store.paused_types(conn))

    def _start_threads(self) -> None:
        self.housekeeper.state = "idle"
        self._warm_up_job_process()
        self.housekeeper.start()
        self.watchdog.start()
        if self.config.daemon.listen:
            self.listener = Listener(
                self.config,
                self.wake,
                self.log,
                on_cancel=self.housekeeper.cancel_requested,
                on_control=self._control_changed,
            )
            self.listener.start()
        self.log.info(
            "worker_started",
            config=_loggable_config(self.config),
            workflows=self.registry.names(),
            listen=self.config.daemon.listen,
        )
        self.notifier.ready("idle")

    def _control_changed(self) -> None:
        self.housekeeper.pauses_dirty.set()
        self.housekeeper.poke.set()
        self.wake.set()

    def run(self) -> int:
        """Loop until stopped (or until --max-jobs / --once say so); returns the exit code.

        A stop is clean (0) in every state: waiting for the database at start, or during an outage.
        """
        try:
            started = self.start()
        except DatabaseRefused:
            raise
        except DB_UNAVAILABLE as exc:
            if self.once:  # it gave up waiting
                raise self._gave_up_waiting(exc) from None
            raise
        if not started:
            self._drop_conn()
            self.notifier.stopping()
            self.log.info("worker_stopped", jobs_done=0, exit_code=EXIT_CLEAN, waiting_for_db=True)
            return EXIT_CLEAN
        busy = False
        try:
            while not self.stopping:
                self.wake.clear()
                if self.reload_requested.is_set():
                    self._reload()
                if self.run_once():
                    busy = True
                    if self.max_jobs is not None and self.jobs_done >= self.max_jobs:
                        self.log.info("max_jobs_reached", max_jobs=self.max_jobs)
                        break
                    continue
                if self.once and not self.stopping:
                    break
                self.housekeeper.loop_tick = time.monotonic()
                self.wake.wait(self._idle_wait(just_busy=busy))
                busy = False
        except DB_UNAVAILABLE as exc:
            if not self.stopping:
                self._gave_up = True  # shutdown tries once more, and does not wait again
                if self.once:
                    raise self._gave_up_waiting(exc) from None
                raise
            # stopped during an outage: what could not be written is left to the rescue (a job this
            # daemon held is put back by the next daemon under its id at once, or when its heartbeat ages)
            self.log.warning("stopped_during_db_outage", error=str(exc).strip()[:200])
        finally:
            self.shutdown()
        return EXIT_CLEAN

    def _gave_up_waiting(self, exc: BaseException) -> DatabaseUnavailable:
        waited = self.config.daemon.once_db_wait_seconds
        return DatabaseUnavailable(
            f"database unavailable, gave up after {waited:g}s (run --once waits daemon.once_db_wait_seconds): "
            + scrub(" ".join(str(exc).split()), self.config.database.url)
        )

    def _idle_wait(self, *, just_busy: bool = False) -> float:
        """The poll interval, shortened to when the next retry or delayed job becomes due.

        Right after a busy stretch the first wait is short: a claim can come back empty while another
        daemon is mid-claim for the only user with a free slot, and that claim commits in a moment.
        """
        interval = self.config.poll_interval_seconds
        if just_busy:
            interval = min(interval, RECHECK_AFTER_BUSY_SECONDS)
        if self.notifier.watchdog_seconds is not None:
            # the watchdog trusts a loop that ticks: an idle daemon must wake well within WatchdogSec
            interval = min(interval, self.notifier.watchdog_seconds / 3)
        due = self._db(store.next_due_in)
        return interval if due is None else max(0.01, min(interval, due))

    def _reload(self) -> None:
        self.reload_requested.clear()
        if self.reload_config is None:
            return
        self.notifier.reloading()
        try:
            new = self.reload_config()
        except Exception as exc:  # a bad edit must not stop a running daemon
            self.log.error("config_reload_failed", error=str(exc))
            # without READY=1 systemd would show the unit as reloading forever
            self.notifier.send("READY=1\nSTATUS=idle (config reload failed, old config kept)")
            return
        self.config = new
        self.housekeeper.config = new
        self.policy = RunPolicy.from_config(new)
        self.settings = workflow_settings(new)
        if self.children is not None:
            self.children.close()  # a job process with the new settings
            self.children = None
        from jobcron import logs

        logs.configure(new.logging.level, new.logging.format)
        self._warm_up_job_process()
        self.log.info("config_reloaded", config=_loggable_config(new))
        self.notifier.send("READY=1\nSTATUS=idle")

    def shutdown(self) -> None:
        """Stop the threads, put back a prefetched job, remove the worker row."""
        self.notifier.stopping()
        if self.listener is not None:
            self.listener.halt.set()
        self.housekeeper.halt.set()
        self.housekeeper.poke.set()
        if self.children is not None:
            self.children.close()
        if self.housekeeper.is_alive():
            # its statement in flight ends within the lock timeout (past the stop deadline the watchdog
            # cancels it); a halted housekeeper never registers the worker row again
            d = self.config.database
            self.housekeeper.join(d.connect_timeout_seconds + d.lock_timeout_seconds + 1)
        try:
            self._db(self._release_and_unregister, must_finish=True)
        except psycopg.Error as exc:
            self.log.error("unregister_failed", error=str(exc).strip()[:200])
        self._drop_conn()
        self.watchdog.halt.set()
        self.watchdog.poke.set()
        if self.watchdog.is_alive():
            self.watchdog.join(1.0)
        self.log.info("worker_stopped", jobs_done=self.jobs_done, exit_code=EXIT_CLEAN)

    def _release_and_unregister(self, conn: Connection) -> None:
        self._release_prefetched(conn)
        store.worker_unregister(conn, self.worker_id)


def _cancel(conn: Connection) -> None:
    """Ask the server to cancel what conn runs (from another thread; psycopg allows it)."""
    try:
        conn.cancel_safe(timeout=STOP_DB_WAIT_SECONDS)
    except Exception:  # the connection may be gone meanwhile: nothing left to cancel
        return


def _loggable_config(config: Config) -> dict[str, Any]:
    data = config_as_dict(config)
    return {k: data[k] for k in ("database", "scheduler_settings", "job_processing", "daemon")}


def _host_pid() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def _version() -> str:
    from jobcron import __version__

    return __version__


__all__ = ["DB_UNAVAILABLE", "Worker", "default_worker_id"]
