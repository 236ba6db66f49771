"""What the daemon's threads share: stop and wake signals, the running job, the jobs held, pauses.

The main loop, the housekeeper, the watchdog and the listener each read and change it; every change of
more than one value happens under its one lock, and each value is replaced rather than mutated, so a
reader on another thread sees an old value or a new one, never half of a change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from jobcron.models import ClaimedJob
from jobcron.workflows.base import WorkflowContext


@dataclass
class Running:
    """The job the main thread is running now."""

    job: ClaimedJob
    ctx: WorkflowContext
    since: float = field(default_factory=time.monotonic)
    lease_lost: bool = False
    next_heartbeat: float = 0.0
    # process mode: the main thread supervises the job process (grace, timeout, cancel); inline: the
    # housekeeper does what a thread can (asks the workflow to stop, ends the daemon at the grace)
    supervised_by_main: bool = False
    force: bool = False
    timeout_seconds: float | None = None
    timeout_reported: bool = False
    # the workflow's progress as last written, and when (the lease writes a newer one at most every PROGRESS_SECONDS)
    progress_written: tuple[float, str | None] | None = None
    progress_at: float = 0.0


class DaemonState:
    """One daemon's shared state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stop = threading.Event()  # first signal: stop claiming, let the running job finish
        self.hard_stop = threading.Event()  # second signal or grace over: stop waiting
        self.wake = threading.Event()  # something may be claimable: the idle loop looks now
        self.reload = threading.Event()  # SIGHUP
        self.pauses_dirty = threading.Event()  # a pause changed: the housekeeper reads them now
        self.pauses_dirty.set()
        self.poke = threading.Event()  # the housekeeper ticks now
        self._running: Running | None = None
        self._held: frozenset[str] = frozenset()
        self.grace_deadline: float | None = None
        self.paused: tuple[str, ...] = ()
        self.activity = "starting"
        self.loop_tick = time.monotonic()
        # set while the main loop waits for a statement: the server ends it within the lock timeout
        self.loop_db_since: float | None = None
        self.jobs_done = 0

    # --- stopping -------------------------------------------------------------------------------------

    def request_stop(self, grace_seconds: float) -> None:
        """First call: stop claiming, the running job may finish within the grace; second: cut it short."""
        with self._lock:
            if self.stop.is_set():
                self.hard_stop.set()
                self.grace_deadline = time.monotonic()
            else:
                self.stop.set()
                self.grace_deadline = time.monotonic() + grace_seconds
            running = self._running
        if running is not None:
            running.ctx.stop_event.set()
        self.wake.set()
        self.poke.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self.stop.is_set()

    # --- the running job --------------------------------------------------------------------------------

    def begin(self, running: Running) -> None:
        """A job starts to run."""
        with self._lock:
            self._running = running
            self.activity = "running"
            stopping = self.stop.is_set()
        if stopping:
            running.ctx.stop_event.set()

    def end(self) -> None:
        """The running job is over."""
        with self._lock:
            self._running = None
            self.activity = "idle"

    def running(self) -> Running | None:
        """The running job, if any."""
        with self._lock:
            return self._running

    def status_text(self) -> str:
        """The STATUS= line for what the daemon does now."""
        running = self.running()
        return "idle" if running is None else f"running job {running.job.id} ({running.job.job_type})"

    # --- the jobs held ----------------------------------------------------------------------------------

    @property
    def held(self) -> frozenset[str]:
        """The jobs this daemon holds and will record (running, being recorded, claimed next): a reconnect
        never puts them back, nor does this daemon's rescue take them."""
        return self._held

    def hold(self, job_id: str) -> None:
        """A claim of this daemon committed."""
        with self._lock:
            self._held = self._held | {job_id}

    def let_go(self, job_id: str) -> None:
        """A job's outcome is written (or its lease is lost)."""
        with self._lock:
            self._held = self._held - {job_id}

    # --- liveness ---------------------------------------------------------------------------------------

    def tick(self) -> None:
        """The main loop is alive."""
        self.loop_tick = time.monotonic()

    @contextmanager
    def waiting_for_db(self) -> Iterator[None]:
        """While the main loop waits for a statement (the server ends it within the lock timeout)."""
        self.loop_db_since = time.monotonic()
        try:
            yield
        finally:
            self.loop_db_since = None

    def loop_alive(self, now: float, watchdog_seconds: float | None, db_wait_seconds: float) -> bool:
        """The watchdog's rule: the loop ticked within WatchdogSec, or it is busy with a job whose lease
        it still holds, or it waits for a statement the server ends by itself within db_wait_seconds."""
        if watchdog_seconds is None or now - self.loop_tick < watchdog_seconds:
            return True
        running = self.running()
        if running is not None and not running.lease_lost:
            return True
        since = self.loop_db_since
        return since is not None and now - since < db_wait_seconds + watchdog_seconds
