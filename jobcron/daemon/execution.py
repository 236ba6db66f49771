"""Execution: a claimed job's workflow run inline or in the warm job process, ended as an Outcome.

The Executor knows how to run a job, not when: the loop (worker.py) claims, marks the job running in
the daemon's state, and records what this returns.
"""

from __future__ import annotations

from typing import Any

from jobcron import store
from jobcron.config import Config
from jobcron.daemon.connection import MainConnection
from jobcron.daemon.inline import run_inline
from jobcron.daemon.outcomes import RunPolicy, check_job, failed_outcome, workflow_settings
from jobcron.daemon.process import ChildRunner, Supervision
from jobcron.daemon.state import DaemonState, Running
from jobcron.db import Connection
from jobcron.errors import PermanentError
from jobcron.models import ClaimedJob, Outcome
from jobcron.workflows import Registry
from jobcron.workflows.base import FileInfo, WorkflowContext


class Executor:
    """Runs one job at a time for the loop; owns the warm job process of process mode."""

    def __init__(
        self, config: Config, worker_id: str, state: DaemonState, db: MainConnection, log: Any
    ) -> None:
        self.worker_id = worker_id
        self.state = state
        self.db = db
        self.log = log
        self.registry = Registry(config.workflows)
        self.job_process: ChildRunner | None = None
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Take a (reloaded) config; the job process restarts with it at the next warm_up()."""
        self.config = config
        self.policy = RunPolicy.from_config(config)
        self.settings = workflow_settings(config)

    def is_process_mode(self, job: ClaimedJob) -> bool:
        return self.config.execution_mode_for(job.job_type) == "process"

    def context(self, job: ClaimedJob) -> WorkflowContext:
        """The context the workflow gets; metadata and file are filled in by run()."""
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
        return ctx

    def run(self, running: Running) -> Outcome:
        """Check the row, find the workflow and its file, run it; whatever happens is an Outcome."""
        job, ctx = running.job, running.ctx
        try:
            ctx.metadata = check_job(job, self.config.job_processing.max_metadata_bytes)
            workflow = self.registry.get(job.job_type)
            if job.file_id is not None:
                ctx.file = self._load_file(job.file_id)
            if running.supervised_by_main:
                return self._job_process().run(
                    job, ctx, self.worker_id, self.policy, self._supervision(running)
                )
            return run_inline(workflow, ctx, job, self.policy, self.worker_id)
        except PermanentError as exc:
            return failed_outcome(exc, job, self.policy, self.worker_id)

    def warm_up(self) -> None:
        """Start the job process now, not at the first job: it imports while the daemon idles."""
        p = self.config.job_processing
        if p.execution_mode == "process" or "process" in p.execution_mode_by_type.values():
            self._job_process().start()

    def close(self) -> None:
        """End the warm job process (at shutdown, after a reload; tests that drive execute() call it)."""
        if self.job_process is not None:
            self.job_process.close()
            self.job_process = None

    def _job_process(self) -> ChildRunner:
        if self.job_process is None:
            self.job_process = ChildRunner(self.config, self.policy, self.log)
        return self.job_process

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
