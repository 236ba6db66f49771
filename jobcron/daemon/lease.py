"""The running job's lease, kept from the housekeeper's thread: heartbeat, cancel, timeout, grace.

The heartbeat tells the database the job is alive and brings back what the database knows of it: a
cancel request (forced or not), or that the lease is gone (a rescue, an operator's reset): then this
run can record nothing and is stopped at once. An inline job cannot be killed, so what the main thread
would do for a job process (end it at its timeout, at the end of the shutdown grace) is asked of the
workflow here, or, at the grace, reported to the caller, which ends the daemon.
"""

from __future__ import annotations

import time
from typing import Any

from jobcron import store
from jobcron.daemon.state import DaemonState, Running
from jobcron.db import Connection

# a workflow's progress reaches the database at most this often (ctx.progress keeps only the latest)
PROGRESS_SECONDS = 1.0


class Lease:
    """Keeps the lease of whatever job the main thread runs."""

    def __init__(self, state: DaemonState, heartbeat_seconds: float, log: Any) -> None:
        self.state = state
        self.heartbeat_seconds = heartbeat_seconds
        self.log = log

    def due(self, now: float) -> Running | None:
        """The running job, when its heartbeat is due, or it reported progress not written for PROGRESS_SECONDS."""
        running = self.state.running()
        if running is None or running.lease_lost:
            return None
        if now >= running.next_heartbeat:
            return running
        fresh = running.ctx.reported is not None and running.ctx.reported != running.progress_written
        if fresh and now >= running.progress_at + PROGRESS_SECONDS:
            return running
        return None

    def heartbeat(self, conn: Connection, running: Running) -> None:
        """Refresh the job's heartbeat (and its progress); act on a cancel request or a lost lease."""
        now = time.monotonic()
        running.next_heartbeat = now + self.heartbeat_seconds
        reported = running.ctx.reported
        progress = reported if reported != running.progress_written else None
        cancel = store.heartbeat_job(conn, running.job.id, running.job.lease_token, progress)
        if progress is not None:
            running.progress_written, running.progress_at = progress, now
        if cancel is None:
            # rescued, reset by an operator (the blind UPDATE ... SET status = 'pending') or deleted: the
            # job may already run elsewhere, and this run can record nothing. A job process is terminated
            # at once (force), not after cancel_grace_seconds; an inline workflow can only be asked to stop.
            running.lease_lost = True
            running.force = True
            running.ctx.cancel_event.set()
            self.log.warning("lease_lost", job_id=running.job.id, where="heartbeat")
        elif cancel:
            running.force = running.force or cancel == "force"
            running.ctx.cancel_event.set()

    def check_soon(self) -> None:
        """After an outage (a server crash may have lost the claim, a rescue taken the job): find out at
        once whether the running job is still ours, not a heartbeat period later."""
        running = self.state.running()
        if running is not None:
            running.next_heartbeat = 0.0

    def cancel_requested(self, payload: str) -> None:
        """A cancel notification arrived ("ID" or "ID:force"): stop the job at once if it is ours."""
        job_id, _, mode = payload.partition(":")
        running = self.state.running()
        if running is not None and running.job.id == job_id:
            running.force = running.force or mode == "force"
            running.ctx.cancel_event.set()

    def supervise_inline(self, now: float) -> Running | None:
        """An inline job past its timeout is asked to stop; returns it when the shutdown grace is over."""
        running = self.state.running()
        if running is None or running.supervised_by_main:
            return None
        timeout = running.timeout_seconds
        if not running.timeout_reported and timeout is not None and now - running.since >= timeout:
            running.timeout_reported = True
            # a thread cannot be killed: ask the workflow to stop, and say plainly that it may not
            running.ctx.cancel_event.set()
            self.log.error(
                "job_timeout_not_enforceable",
                job_id=running.job.id,
                timeout_seconds=timeout,
                hint="inline mode can only ask the workflow to stop; use execution_mode process",
            )
        deadline = self.state.grace_deadline
        return running if deadline is not None and now >= deadline else None
