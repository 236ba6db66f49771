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
from typing import TYPE_CHECKING

import structlog

from jobcron import store
from jobcron.config import Config
from jobcron.daemon import lifecycle
from jobcron.daemon.connection import MainConnection
from jobcron.daemon.execution import Executor
from jobcron.daemon.lifecycle import EXIT_CLEAN
from jobcron.daemon.listener import Listener
from jobcron.daemon.maintenance import Maintenance
from jobcron.daemon.process import ChildRunner
from jobcron.daemon.recording import Recorder
from jobcron.daemon.sdnotify import Notifier
from jobcron.daemon.state import DaemonState, Running
from jobcron.daemon.watchdog import Watchdog
from jobcron.db import DB_UNAVAILABLE, Connection, DatabaseRefused, scrub
from jobcron.errors import ConfigError, DatabaseUnavailable, SlotTaken
from jobcron.models import ClaimedJob, Outcome
from jobcron.workflows import Registry

if TYPE_CHECKING:
    from jobcron.daemon.metrics import Metrics
    from jobcron.daemon.tracing import Tracing

RECHECK_AFTER_BUSY_SECONDS = 0.05
# a claim that lost the race for a user's slot is tried again at once, this many times
SLOT_RACE_TRIES = 3


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
        self.state = DaemonState()
        self.db = MainConnection(
            config, self.state, self.log, self.notifier, once=once, on_reconnect=self._after_reconnect
        )
        self.executor = Executor(config, self.worker_id, self.state, self.db, self.log)
        self.recorder = Recorder(
            self.worker_id,
            self.state,
            self.db,
            self.log,
            policy=lambda: self.executor.policy,
            claim_params=self._claim_params,
        )
        self.maintenance = Maintenance(
            config,
            self.worker_id,
            self.state,
            self.log,
            self.notifier,
            on_grace_expired=lambda conn, running: lifecycle.end_at_grace(self, conn, running),
        )
        self.watchdog = Watchdog(
            self.notifier,
            alive=self.loop_alive,
            stopping=self.state.stop.is_set,
            overdue=lambda now: self.db.interrupt_overdue(
                now, [("housekeeper", self.maintenance.conn, self.maintenance.in_tick)]
            ),
        )
        self.listener: Listener | None = None
        self.on_job_start: Callable[[ClaimedJob], None] | None = None
        # OpenTelemetry spans per attempt (telemetry.otel; jobcron.telemetry)
        self.tracing: Tracing | None = None
        if config.telemetry.otel:
            from jobcron import telemetry

            if not telemetry.available():
                raise ConfigError(telemetry.INSTALL_HINT)
            from jobcron.daemon.tracing import Tracing

            self.tracing = Tracing(config.telemetry.trace_metadata_key)
        # called after a job's outcome was written (the demo prints each file's findings then)
        self.on_job_recorded: Callable[[ClaimedJob, Outcome], None] | None = None
        self.metrics: Metrics | None = None
        # /livez's window when `run --health-port` serves it (the idle loop wakes within a third of it)
        self.liveness_seconds: float | None = None
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
        return self.recorder.next_job

    @property
    def registry(self) -> Registry:
        """The workflows this daemon runs."""
        return self.executor.registry

    @property
    def job_process(self) -> ChildRunner | None:
        """The warm job process of process mode, once started."""
        return self.executor.job_process

    def close_job_process(self) -> None:
        """End the warm job process (at shutdown, after a reload; tests that drive execute() call it)."""
        self.executor.close()

    def close(self) -> None:
        """Close the loop's connection and the job process without the shutdown steps (a worker driven
        step by step, as tests and tools do; `run()` ends with `shutdown()` instead)."""
        self.executor.close()
        self.db.drop()

    def use_metrics(self, metrics: Metrics) -> None:
        """Count into these Prometheus metrics (`run --metrics-port`)."""
        self.metrics = self.db.metrics = self.maintenance.metrics = self.recorder.metrics = metrics

    def loop_alive(self, now: float, window: float | None = None) -> bool:
        """The watchdog's rule (and /livez's): alive within `window` seconds (default: WatchdogSec)."""
        d = self.config.database
        # a connection attempt, then a statement waiting for a lock: both end by themselves within this
        waits = d.connect_timeout_seconds + d.lock_timeout_seconds
        return self.state.loop_alive(now, self.notifier.watchdog_seconds if window is None else window, waits)

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
        job = self.recorder.take_next()
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
        running = Running(
            job,
            self.executor.context(job),
            next_heartbeat=time.monotonic() + self.config.daemon.heartbeat_interval_seconds,
            supervised_by_main=self.executor.is_process_mode(job),
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
        try:
            if self.on_job_start is not None:
                self.on_job_start(job)
            if self.tracing is None:
                return self.executor.run(running)
            with self.tracing.attempt(job):
                return self.executor.run(running)
        finally:
            self.state.end()
            self.state.jobs_done += 1
            if self.state.grace_deadline is None:
                self.notifier.status("idle")

    def record(self, job: ClaimedJob, outcome: Outcome, *, claim_next: bool = True) -> ClaimedJob | None:
        """Write the outcome under the lease, and claim the next job in the same transaction when allowed.

        Returns the job so claimed (it is also what the next `run_once` runs). A lost lease writes
        nothing and logs `lease_lost`.
        """
        ran = self._ran
        since = ran.since if ran is not None and ran.job.id == job.id else time.monotonic()
        claimed = self.recorder.record(job, outcome, since, claim_next=claim_next)
        if self.tracing is not None:
            self.tracing.recorded(job, outcome)
        if self.on_job_recorded is not None:
            self.on_job_recorded(job, outcome)
        return claimed

    def put_back_next(self, conn: Connection) -> None:
        """The job claimed with the last record goes back, uncharged: the daemon stops before running it."""
        self.recorder.put_back_next(conn)

    # --- the loop ----------------------------------------------------------------------------------------

    def start(self) -> bool:
        """Connect, check the schema, announce the worker and start the helper threads (see lifecycle.start)."""
        return lifecycle.start(self)

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
                self.state.wake.wait(self.idle_wait(just_busy=busy))
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

    def idle_wait(self, *, just_busy: bool = False) -> float:
        """The poll interval, shortened to when the next retry or delayed job becomes due.

        Right after a busy stretch the first wait is short: a claim can come back empty while another
        daemon is mid-claim for the only user with a free slot, and that claim commits in a moment.
        """
        interval = self.config.poll_interval_seconds
        if just_busy:
            interval = min(interval, RECHECK_AFTER_BUSY_SECONDS)
        window = self.notifier.watchdog_seconds or self.liveness_seconds
        if window is not None:
            # the watchdog and /livez trust a loop that ticks: an idle daemon wakes well within the window
            interval = min(interval, window / 3)
        due = self.db.run(store.next_due_in)
        return interval if due is None else max(0.01, min(interval, due))

    def _reload(self) -> None:
        lifecycle.reload(self)

    def shutdown(self) -> None:
        """Stop the threads, put back a prefetched job, remove the worker row."""
        lifecycle.shutdown(self)


__all__ = ["Worker", "default_worker_id"]
