"""Recording: an attempt's Outcome written under the job's lease, the next job claimed in the same
transaction, and the outcome logged and counted.

The Recorder holds the job claimed with the last record until the loop runs it (`next_job`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from jobcron import store
from jobcron.daemon.connection import MainConnection
from jobcron.daemon.outcomes import RunPolicy, error_record, failed_outcome, interrupted_outcome
from jobcron.daemon.state import DaemonState
from jobcron.db import DATABASE_ERROR, DB_UNAVAILABLE, Connection
from jobcron.models import ClaimedJob, JobStatus, Outcome

if TYPE_CHECKING:
    from jobcron.daemon.metrics import Metrics

_OUTCOME_EVENTS = {
    JobStatus.COMPLETED: "job_completed",
    JobStatus.FAILED: "job_failed",
    JobStatus.CANCELLED: "job_cancelled",
}


class Recorder:
    """Writes outcomes for one daemon; `policy` and `claim_params` follow config reloads."""

    def __init__(
        self,
        worker_id: str,
        state: DaemonState,
        db: MainConnection,
        log: Any,
        policy: Callable[[], RunPolicy],
        claim_params: Callable[[], store.ClaimParams],
    ) -> None:
        self.worker_id = worker_id
        self.state = state
        self.db = db
        self.log = log
        self.policy = policy
        self.claim_params = claim_params
        self.metrics: Metrics | None = None
        self.next_job: ClaimedJob | None = None

    def take_next(self) -> ClaimedJob | None:
        """The job claimed with the last record, handed to the loop (once)."""
        job, self.next_job = self.next_job, None
        return job

    def record(
        self, job: ClaimedJob, outcome: Outcome, since: float, *, claim_next: bool
    ) -> ClaimedJob | None:
        """Write the outcome; returns the job claimed with it. A lost lease writes nothing, logs `lease_lost`."""
        try:
            recorded, self.next_job = self.db.run(
                lambda conn: self._write(conn, job, outcome, claim_next), must_finish=True
            )
        except DATABASE_ERROR as exc:
            if isinstance(exc, DB_UNAVAILABLE):
                raise
            # the outcome itself could not be stored (e.g. a value the database refuses): fail the job with why
            self.log.error("job_record_failed", error=str(exc).strip()[:500])
            fallback = failed_outcome(
                exc,
                job,
                self.policy(),
                self.worker_id,
                error=error_record(exc, job, self.worker_id, "RecordError"),
                permanent=True,
            )
            recorded, self.next_job = self.db.run(
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
                return self.next_job
        self._let_go(job)
        self._log_outcome(job, outcome, since)
        structlog.contextvars.clear_contextvars()
        return self.next_job

    def put_back_next(self, conn: Connection) -> None:
        """The job claimed with the last record goes back, uncharged: the daemon stops before running it."""
        nxt = self.take_next()
        if nxt is not None:
            self.state.let_go(nxt.id)
            store.finish(
                conn, nxt, interrupted_outcome(nxt, self.worker_id, "daemon stopping before it started")
            )

    def _let_go(self, job: ClaimedJob) -> None:
        # the same job may be held again already: an operator's reset made it pending, and the
        # claim that shared this record's transaction took it as the next job
        if self.next_job is None or self.next_job.id != job.id:
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
            recorded, claimed = store.finish_and_claim(conn, job, outcome, self.claim_params())
        except DATABASE_ERROR as exc:
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

    def _log_outcome(self, job: ClaimedJob, outcome: Outcome, since: float) -> None:
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
