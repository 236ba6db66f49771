"""The loop: `run_once()` is one claim-execute-record cycle; `run()` is the loop around it.

The public steps are what a test or a tool may drive one at a time: `claim()`, `execute(job)` (the
workflow inline or in the job process, whatever happens turned into an Outcome), `record(job, outcome)`
(written under the lease, with the next job claimed in the same transaction). `on_job_start` is called
with each job as it starts (the demo prints it; tests use it to act at that moment).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
import structlog

from jobcron import __version__, migrate, store
from jobcron.config import Config, config_as_dict
from jobcron.daemon.child import ChildRunner, Supervision
from jobcron.daemon.connection import MainConnection
from jobcron.daemon.inline import run_inline
from jobcron.daemon.listener import Listener
from jobcron.daemon.maintenance import Maintenance, host_pid
from jobcron.daemon.outcomes import (
    RunPolicy,
    check_job,
    error_record,
    failed_outcome,
    interrupted_outcome,
    workflow_settings,
)
from jobcron.daemon.sdnotify import Notifier
from jobcron.daemon.state import DaemonState, Running
from jobcron.daemon.watchdog import Watchdog
from jobcron.db import DB_UNAVAILABLE, Connection, DatabaseRefused, retrying, scrub
from jobcron.errors import DatabaseUnavailable, PermanentError, SlotTaken, WorkerIdTaken
from jobcron.models import ClaimedJob, JobStatus, Outcome
from jobcron.workflows import Registry
from jobcron.workflows.base import FileInfo, WorkflowContext

if TYPE_CHECKING:
    from jobcron.daemon.metrics import Metrics

EXIT_CLEAN = 0
RECHECK_AFTER_BUSY_SECONDS = 0.05
# a claim that lost the race for a user's slot is tried again at once, this many times
SLOT_RACE_TRIES = 3

_OUTCOME_EVENTS = {
    JobStatus.COMPLETED: "job_completed",
    JobStatus.FAILED: "job_failed",
    JobStatus.CANCELLED: "job_cancelled",
}


def default_worker_id() -> str:
    """host-pid-random: unique per process, readable in `job_cron workers`."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


class Worker:
    """One daemon: a main connection for claim/record, a housekeeper, a watchdog and a listener thread."""

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
        self.state = DaemonState()
        self.db = MainConnection(
            config, self.state, self.log, self.notifier, once=once, on_reconnect=self._after_reconnect
        )
        self.maintenance = Maintenance(
            config,
            self.worker_id,
            self.state,
            self.log,
            self.notifier,
            on_grace_expired=lambda conn, running: end_at_grace(self, conn, running),
        )
        self.watchdog = Watchdog(
            self.notifier,
            alive=self._loop_alive,
            stopping=self.state.stop.is_set,
            overdue=lambda now: self.db.interrupt_overdue(
                now, [("housekeeper", self.maintenance.conn, self.maintenance.in_tick)]
            ),
        )
        self.listener: Listener | None = None
        self.job_process: ChildRunner | None = None
        self.on_job_start: Callable[[ClaimedJob], None] | None = None
        self.metrics: Metrics | None = None
        self._next: ClaimedJob | None = None
        self._ran: Running | None = None

    # --- control ----------------------------------------------------------------------------------------

    def request_stop(self, reason: str = "signal") -> None:
        """First call: stop claiming and let the running job finish within the grace period; second: cut it short."""
        self.state.request_stop(self.config.daemon.shutdown_grace_seconds)
        self.watchdog.poke.set()

    def request_reload(self) -> None:
        """SIGHUP: reload the config at the next cycle."""
        self.state.reload.set()
        self.state.wake.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self.state.stopping

    @property
    def jobs_done(self) -> int:
        """Jobs executed since start."""
        return self.state.jobs_done

    @property
    def next_job(self) -> ClaimedJob | None:
        """The job claimed together with the last record, to run next."""
        return self._next

    def use_metrics(self, metrics: Metrics) -> None:
        """Count into these Prometheus metrics (`run --metrics-port`)."""
        self.metrics = self.db.metrics = self.maintenance.metrics = metrics

    def _loop_alive(self, now: float) -> bool:
        d = self.config.database
        # a connection attempt, then a statement waiting for a lock: both end by themselves within this
        waits = d.connect_timeout_seconds + d.lock_timeout_seconds
        return self.state.loop_alive(now, self.notifier.watchdog_seconds, waits)

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
        released = store.release_worker_jobs(conn, self.worker_id, list(self.state.held))
        if released:
            self.log.info("jobs_released", job_ids=released)
            store.notify_jobs(conn, "released")

    # --- one cycle ---------------------------------------------------------------------------------------

    def _claim_params(self) -> store.ClaimParams:
        return store.ClaimParams(
            worker_id=self.worker_id,
            order=self.config.job_processing.queue_priority,
            user_limit=self.config.user_limit,
            max_metadata_bytes=self.config.job_processing.max_metadata_bytes,
        )

    def _may_claim(self) -> bool:
        if self.stopping or "*" in self.state.paused:
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
                except SlotTaken:
                    races += 1  # another daemon took the same user slot at the same instant
                    if races < SLOT_RACE_TRIES:
                        continue
                    return None
                if claimed.job is not None or not claimed.parked:
                    return claimed.job
                # every look parks at least one job, so this ends; the loop is working, not stuck
                self.state.tick()
            return None

        job = self.db.run(attempt)
        if job is not None:
            self.state.hold(job.id)
        return job

    def run_once(self) -> bool:
        """Claim (or take the job claimed with the last record), run and record one job; False when idle."""
        self.state.tick()
        job, self._next = self._next, None
        if job is None:
            if not self._may_claim():
                return False
            job = self.claim()
            if job is None:
                return False
        outcome = self.execute(job)
        self.record(job, outcome, claim_next=self._may_claim())
        return True

    def execute(self, job: ClaimedJob) -> Outcome:
        """Run a claimed job's workflow (inline or in the job process) and say how the attempt ended."""
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
        running = Running(
            job,
            ctx,
            next_heartbeat=time.monotonic() + self.config.daemon.heartbeat_interval_seconds,
            supervised_by_main=process_mode,
            timeout_seconds=float(
                job.timeout_seconds or self.config.scheduler_settings.job_timeout_minutes * 60
            ),
        )
        self.state.begin(running)
        self._ran = running
        self.notifier.status(self.state.status_text())
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
                outcome = self._job_process().run(
                    job, ctx, self.worker_id, self.policy, self._supervision(running)
                )
            else:
                outcome = run_inline(workflow, ctx, job, self.policy, self.worker_id)
        except PermanentError as exc:
            outcome = failed_outcome(exc, job, self.policy, self.worker_id)
        finally:
            self.state.end()
            self.state.jobs_done += 1
            if self.state.grace_deadline is None:
                self.notifier.status("idle")
        return outcome

    def _warm_up_job_process(self) -> None:
        """Start the job process now, not at the first job: it imports while the daemon idles."""
        p = self.config.job_processing
        if p.execution_mode == "process" or "process" in p.execution_mode_by_type.values():
            self._job_process().start()

    def _job_process(self) -> ChildRunner:
        if self.job_process is None:
            self.job_process = ChildRunner(self.config, self.policy, self.log)
        return self.job_process

    def close_job_process(self) -> None:
        """End the warm job process (at shutdown, after a reload; tests that drive execute() call it)."""
        if self.job_process is not None:
            self.job_process.close()
            self.job_process = None

    def _supervision(self, running: Running) -> Supervision:
        c = self.config
        return Supervision(
            timeout_seconds=running.timeout_seconds,
            max_processing_seconds=c.job_processing.max_processing_time_minutes * 60,
            cancel_grace_seconds=c.daemon.cancel_grace_seconds,
            force_cancel=lambda: running.force,
            stop_deadline=lambda: self.state.grace_deadline,
        )

    def _load_file(self, file_id: str) -> FileInfo | None:
        def load(conn: Connection) -> dict[str, Any] | None:
            store.mark_file_processing(conn, file_id)
            return store.get_file(conn, file_id)

        row = self.db.run(load)
        if row is None:
            return None
        return FileInfo(str(row["id"]), row["file_path"], row["original_name"], row["status"])

    def record(self, job: ClaimedJob, outcome: Outcome, *, claim_next: bool = True) -> ClaimedJob | None:
        """Write the outcome under the lease, and claim the next job in the same transaction when allowed.

        Returns the job so claimed (it is also what the next `run_once` runs). A lost lease writes
        nothing and logs `lease_lost`.
        """
        try:
            recorded, self._next = self.db.run(
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
            recorded, self._next = self.db.run(
                lambda conn: self._write(conn, job, fallback, False), must_finish=True
            )
            outcome = fallback
        if not recorded:
            state = self.db.run(
                lambda conn: store.job_lease_state(conn, job.id, job.lease_token), must_finish=True
            )
            # our own write whose commit we did not see (the connection dropped) is not a lost lease:
            # the row carries this lease's record mark (a rescue, release or reset never leaves it)
            if not (state and state["ours"] and state["status"] != JobStatus.PROCESSING):
                self._let_go(job)
                self.log.warning("lease_lost", status=state["status"] if state else None)
                structlog.contextvars.clear_contextvars()
                return self._next
        self._let_go(job)
        self._log_outcome(job, outcome)
        structlog.contextvars.clear_contextvars()
        return self._next

    def _let_go(self, job: ClaimedJob) -> None:
        # the same job may be held again already: an operator's reset made it pending, and the
        # claim that shared this record's transaction took it as the next job
        if self._next is None or self._next.id != job.id:
            self.state.let_go(job.id)

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
            self.state.hold(nxt.id)
        return recorded, nxt

    def _log_outcome(self, job: ClaimedJob, outcome: Outcome) -> None:
        ran = self._ran
        since = ran.since if ran is not None and ran.job.id == job.id else time.monotonic()
        duration_ms = round((time.monotonic() - since) * 1000, 2)
        if self.metrics is not None:
            self.metrics.job_outcome(job.job_type, outcome, duration_ms / 1000)
        if outcome.is_interrupted:
            self.log.info("job_interrupted", duration_ms=duration_ms)
        elif outcome.is_retry:
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

    def put_back_next(self, conn: Connection) -> None:
        """The job claimed with the last record goes back, uncharged: the daemon stops before running it."""
        nxt, self._next = self._next, None
        if nxt is not None:
            self.state.let_go(nxt.id)
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
                self.state.stop, on_retry=self.db.on_retry, deadline=self.db.deadline, refusals=False
            ):
                with attempt:
                    self._announce(self.db.connection())
        except DatabaseRefused:
            raise
        except DB_UNAVAILABLE:
            if self.stopping:
                return False
            raise
        if self.db.outage is not None:
            self.db.back()
        self.db.lost = False  # the start's connection took the id and rescued: nothing to resync
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
        store.worker_register(conn, self.worker_id, *host_pid(), "idle", __version__)
        # jobs an earlier run under this id left processing died with it: rescued now and charged
        # an attempt, so a job that kills its daemon cannot make it crash-loop forever
        rescued = self.maintenance.rescue(conn, restarted_worker=self.worker_id)
        if rescued:
            self.log.warning("jobs_rescued_at_start", job_ids=rescued)
        if not self.config.job_processing.auto_start_processing:
            # auto_start_processing false: processing does not start by itself when the system starts;
            # a daemon restarting into a live fleet must not pause what an operator resumed
            alive_within = 3 * self.config.daemon.worker_heartbeat_seconds
            if store.pause_all_if_absent(conn, self.worker_id, alive_within):
                self.log.warning("worker_started_paused", hint="run `job_cron resume` to start processing")
        self.state.paused = tuple(store.paused_types(conn))

    def _start_threads(self) -> None:
        self.state.activity = "idle"
        self._warm_up_job_process()
        self.maintenance.start()
        self.watchdog.start()
        if self.config.daemon.listen:
            self.listener = Listener(
                self.config,
                self.state.wake,
                self.log,
                on_cancel=self.maintenance.lease.cancel_requested,
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
        self.state.pauses_dirty.set()
        self.state.poke.set()
        self.state.wake.set()

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
            self.db.drop()
            self.notifier.stopping()
            self.log.info("worker_stopped", jobs_done=0, exit_code=EXIT_CLEAN, waiting_for_db=True)
            return EXIT_CLEAN
        busy = False
        try:
            while not self.stopping:
                self.state.wake.clear()
                if self.state.reload.is_set():
                    self._reload()
                if self.run_once():
                    busy = True
                    if self.max_jobs is not None and self.jobs_done >= self.max_jobs:
                        self.log.info("max_jobs_reached", max_jobs=self.max_jobs)
                        break
                    continue
                if self.once and not self.stopping:
                    break
                self.state.tick()
                self.state.wake.wait(self._idle_wait(just_busy=busy))
                busy = False
        except DB_UNAVAILABLE as exc:
            if not self.stopping:
                self.db.gave_up = True  # shutdown tries once more, and does not wait again
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
        due = self.db.run(store.next_due_in)
        return interval if due is None else max(0.01, min(interval, due))

    def _reload(self) -> None:
        self.state.reload.clear()
        if self.reload_config is None:
            return
        self.notifier.reloading()
        try:
            new = self.reload_config()
        except Exception as exc:  # a bad edit must not stop a running daemon
            self.log.error("config_reload_failed", error=str(exc))
            # without READY=1 systemd would show the unit as reloading forever
            self.notifier.ready("idle (config reload failed, old config kept)")
            return
        self.config = self.db.config = new
        self.maintenance.reconfigure(new)
        self.policy = RunPolicy.from_config(new)
        self.settings = workflow_settings(new)
        self.close_job_process()  # a job process with the new settings
        from jobcron import logs

        logs.configure(new.logging.level, new.logging.format)
        self._warm_up_job_process()
        self.log.info("config_reloaded", config=_loggable_config(new))
        self.notifier.ready("idle")

    def shutdown(self) -> None:
        """Stop the threads, put back a prefetched job, remove the worker row."""
        self.notifier.stopping()
        if self.listener is not None:
            self.listener.halt.set()
        self.maintenance.halt.set()
        self.state.poke.set()
        self.close_job_process()
        if self.maintenance.is_alive():
            # its statement in flight ends within the lock timeout (past the stop deadline the watchdog
            # cancels it); a halted housekeeper never registers the worker row again
            d = self.config.database
            self.maintenance.join(d.connect_timeout_seconds + d.lock_timeout_seconds + 1)
        try:
            self.db.run(self._release_and_unregister, must_finish=True)
        except psycopg.Error as exc:
            self.log.error("unregister_failed", error=str(exc).strip()[:200])
        self.db.drop()
        self.watchdog.halt.set()
        self.watchdog.poke.set()
        if self.watchdog.is_alive():
            self.watchdog.join(1.0)
        self.log.info("worker_stopped", jobs_done=self.jobs_done, exit_code=EXIT_CLEAN)

    def _release_and_unregister(self, conn: Connection) -> None:
        self.put_back_next(conn)
        store.worker_unregister(conn, self.worker_id)


def end_at_grace(worker: Worker, conn: Connection | None, running: Running) -> None:
    """The shutdown grace ended with an inline job still running: put it back and end the process.

    Runs on the housekeeper's thread, on its connection: a thread cannot be killed, so ending the
    process is the interruption, once the job and the one claimed next are put back uncharged.
    """
    log = worker.log
    log.warning("shutdown_grace_expired", job_id=running.job.id)
    outcome = interrupted_outcome(running.job, worker.worker_id, "shutdown grace period expired")
    if conn is not None:
        try:
            store.finish(conn, running.job, outcome)
            worker.put_back_next(conn)
            store.worker_unregister(conn, worker.worker_id)
        except psycopg.Error as exc:
            log.error("put_back_failed", error=str(exc).strip()[:200])
    log.info("job_interrupted", job_id=running.job.id)
    log.info("worker_stopped", jobs_done=worker.jobs_done, exit_code=EXIT_CLEAN)
    worker.notifier.stopping()
    os._exit(EXIT_CLEAN)


def _loggable_config(config: Config) -> dict[str, Any]:
    data = config_as_dict(config)
    return {k: data[k] for k in ("database", "scheduler_settings", "job_processing", "daemon")}


__all__ = ["Worker", "default_worker_id"]
