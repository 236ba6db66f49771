"""Process mode: run workflows in a supervised child process so timeouts, cancels and crashes end only the job.

One warm child per daemon is reused from job to job (a job costs a pipe round trip, not a process
start); it is replaced when it must be killed (timeout, forced cancel, shutdown), when it dies
(segfault, os._exit, OOM) or after a MemoryError. The child is started with `spawn`, so it shares
no database connection, lock or thread with the daemon.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from jobcron.config import Config
from jobcron.models import ClaimedJob, JobStatus, Outcome
from jobcron.runner import (
    RunPolicy,
    completed,
    error_record,
    failed_outcome,
    interrupted_outcome,
    plain_error,
)
from jobcron.workflows.base import FileInfo, WorkflowContext, WorkflowResult, WorkflowSettings

TERMINATE_GRACE_SECONDS = 2.0
EXIT_ORPHANED = 70  # the job process found its daemon gone
POLL_SECONDS = 0.02
_SPAWN = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class ChildSetup:
    """What a child needs to build its own registry and logging."""

    workflows: dict[str, str]
    parent_pid: int
    log_level: str
    log_format: str
    memory_limit_mb: int | None
    policy: RunPolicy


def _child_main(
    setup: ChildSetup, pipe: multiprocessing.connection.Connection, cancel: MpEvent, stop: MpEvent
) -> None:
    """The child's loop: receive a job, run it, send back the result or the error."""
    import resource
    import threading

    import structlog

    from jobcron import logs
    from jobcron.errors import PermanentError
    from jobcron.runner import call_workflow
    from jobcron.workflows import Registry

    # the daemon handles signals; the child only stops when told or killed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # a daemon killed outright (kill -9, OOM) must not leave its job running: the job is rescued and
    # run again elsewhere, and an orphan would run it twice at once (and past the per-user limit)
    _die_with_parent(setup.parent_pid)
    if setup.memory_limit_mb:
        limit = setup.memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logs.configure(setup.log_level, setup.log_format)
    registry = Registry(setup.workflows)
    cancel_t, stop_t = threading.Event(), threading.Event()

    def mirror() -> None:
        # multiprocessing events are not threading events: mirror them for the workflow context
        while True:
            if os.getppid() != setup.parent_pid:  # where the kernel can't tell us, notice within 50 ms
                os._exit(EXIT_ORPHANED)
            if cancel.wait(0.05):
                cancel_t.set()
            if stop.is_set():
                stop_t.set()

    threading.Thread(target=mirror, daemon=True).start()
    while True:
        try:
            message = pipe.recv()
        except EOFError:
            return
        cancel_t.clear()
        stop_t.clear()
        log = structlog.get_logger().bind(
            job_id=message["job_id"], job_type=message["job_type"], child_pid=os.getpid()
        )
        ctx = WorkflowContext(
            job_id=message["job_id"],
            job_type=message["job_type"],
            attempt=message["attempt"],
            user_id=message["user_id"],
            business_description=message["business_description"],
            metadata=message["metadata"],
            file=message["file"],
            logger=log,
            settings=message["settings"],
            stop_event=stop_t,
            cancel_event=cancel_t,
        )
        try:
            workflow = registry.get(message["job_type"])
            result = call_workflow(workflow, ctx, setup.policy)
            pipe.send(("ok", result))
        except BaseException as exc:
            permanent = isinstance(exc, PermanentError)
            pipe.send(("error", _describe(exc), permanent, ctx.cancel_event.is_set()))
            if isinstance(exc, MemoryError | KeyboardInterrupt | SystemExit):
                return  # a child that ran out of memory is not trusted with the next job


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the daemon dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(EXIT_ORPHANED)


def _describe(exc: BaseException) -> dict[str, Any]:
    import traceback

    return {
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:],
        "cancelled": type(exc).__name__ == "JobCancelled",
    }


def describe_exit(code: int | None) -> str:
    """A child's exit code in words: 'signal SIGSEGV' or 'exit code 3'."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


@dataclass
class Supervision:
    """What the daemon asks of a running child job."""

    timeout_seconds: float | None
    max_processing_seconds: float
    cancel_grace_seconds: float
    force_cancel: Callable[[], bool]
    stop_deadline: Callable[[], float | None]


class ChildRunner:
    """A warm child process that runs one job at a time for the daemon."""

    def __init__(self, config: Config, policy: RunPolicy, log: Any) -> None:
        self.setup = ChildSetup(
            workflows=dict(config.workflows),
            parent_pid=os.getpid(),
            log_level=config.logging.level,
            log_format="json" if config.logging.format == "auto" else config.logging.format,
            memory_limit_mb=config.job_processing.memory_limit_mb,
            policy=policy,
        )
        self.log = log
        self._proc: SpawnProcess | None = None
        self._pipe: multiprocessing.connection.Connection | None = None
        self._cancel: MpEvent | None = None
        self._stop: MpEvent | None = None
        self.children_started = 0

    def _ensure(self) -> tuple[SpawnProcess, multiprocessing.connection.Connection, MpEvent, MpEvent]:
        if self._proc is None or not self._proc.is_alive():
            self._discard()
            parent_end, child_end = _SPAWN.Pipe()
            self._cancel, self._stop = _SPAWN.Event(), _SPAWN.Event()
            self._proc = _SPAWN.Process(
                target=_child_main,
                args=(self.setup, child_end, self._cancel, self._stop),
                name="jobcron-job",
                daemon=True,
            )
            self._proc.start()
            child_end.close()
            self._pipe = parent_end
            self.children_started += 1
        assert self._pipe is not None and self._cancel is not None and self._stop is not None
        return self._proc, self._pipe, self._cancel, self._stop

    def _discard(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
        self._proc = self._pipe = self._cancel = self._stop = None

    def kill(self, reason: str) -> int | None:
        """Terminate the child: SIGTERM, then SIGKILL after a short grace; returns its exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.is_alive():
            self.log.warning("job_process_terminating", child_pid=proc.pid, reason=reason)
            proc.terminate()
            proc.join(TERMINATE_GRACE_SECONDS)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        code = proc.exitcode
        self._discard()
        return code

    def close(self) -> None:
        """Stop the warm child (daemon shutdown): an idle child ends when its pipe closes."""
        proc = self._proc
        if proc is not None and proc.is_alive():
            if self._pipe is not None:
                self._pipe.close()
                self._pipe = None
            proc.join(1.0)
            if proc.is_alive():
                self.kill("daemon stopping")
        self._discard()

    def run(
        self, job: ClaimedJob, ctx: WorkflowContext, worker_id: str, policy: RunPolicy, sup: Supervision
    ) -> Outcome:
        """Send the job to the child and supervise it until it answers, dies or must be stopped."""
        proc, pipe, cancel, stop = self._ensure()
        cancel.clear()
        stop.clear()
        pipe.send(
            {
                "job_id": job.id,
                "job_type": job.job_type,
                "attempt": job.attempts,
                "user_id": job.user_id,
                "business_description": job.business_description,
                "metadata": dict(ctx.metadata),
                "file": ctx.file,
                "settings": ctx.settings,
            }
        )
        started = time.monotonic()
        cancel_since: float | None = None
        while True:
            if pipe.poll(POLL_SECONDS):
                try:
                    answer = pipe.recv()
                except EOFError:
                    answer = None
                if answer is not None:
                    return self._outcome(answer, job, ctx, worker_id, policy)
            if not proc.is_alive():
                code = proc.exitcode
                self._discard()
                if ctx.stop_event.is_set() and sup.stop_deadline() is not None:
                    return interrupted_outcome(
                        job, worker_id, f"job process ended during shutdown ({describe_exit(code)})"
                    )
                error = plain_error(
                    f"workflow process died: {describe_exit(code)}", "WorkerProcessDied", job, worker_id
                )
                return failed_outcome(None, job, policy, worker_id, error=error)
            now = time.monotonic()
            elapsed = now - started
            if ctx.stop_event.is_set():
                stop.set()
                deadline = sup.stop_deadline()
                if deadline is not None and now >= deadline:
                    self.kill("shutdown grace period expired")
                    return interrupted_outcome(job, worker_id, "shutdown grace period expired")
            if ctx.cancel_event.is_set():
                cancel.set()
                cancel_since = cancel_since or now
                if sup.force_cancel() or now - cancel_since >= sup.cancel_grace_seconds:
                    code = self.kill("cancelled")
                    error = plain_error(
                        f"cancelled; job process terminated ({describe_exit(code)})",
                        "JobCancelled",
                        job,
                        worker_id,
                    )
                    return Outcome(JobStatus.CANCELLED, error=error)
            if sup.timeout_seconds is not None and elapsed >= sup.timeout_seconds:
                code = self.kill("timeout")
                error = plain_error(
                    f"timed out after {sup.timeout_seconds:g} s ({describe_exit(code)})",
                    "JobTimeout",
                    job,
                    worker_id,
                )
                return failed_outcome(None, job, policy, worker_id, error=error)
            if elapsed >= sup.max_processing_seconds:
                code = self.kill("max_processing_time exceeded")
                self.log.error("job_over_max_processing_time", seconds=round(elapsed, 1))
                error = plain_error(
                    f"exceeded max_processing_time ({sup.max_processing_seconds:g} s); terminated",
                    "MaxProcessingTimeExceeded",
                    job,
                    worker_id,
                )
                return failed_outcome(None, job, policy, worker_id, error=error, permanent=True)

    def _outcome(
        self,
        answer: tuple[Any, ...],
        job: ClaimedJob,
        ctx: WorkflowContext,
        worker_id: str,
        policy: RunPolicy,
    ) -> Outcome:
        if answer[0] == "ok":
            result: WorkflowResult = answer[1]
            try:
                return completed(result)
            except Exception as exc:
                return failed_outcome(exc, job, policy, worker_id, permanent=True)
        _, info, permanent, was_cancelled = answer
        error = plain_error(info["message"], info["type"], job, worker_id)
        error["traceback"] = info["traceback"]
        if info["cancelled"] or was_cancelled or ctx.cancel_event.is_set():
            return Outcome(JobStatus.CANCELLED, error=error)
        if ctx.stop_event.is_set() and not permanent:
            return interrupted_outcome(job, worker_id, f"shutdown while the job raised {info['type']}")
        if info["type"] == "MemoryError":
            self.kill("MemoryError in the job process")
        return failed_outcome(None, job, policy, worker_id, error=error, permanent=permanent)


__all__ = ["ChildRunner", "FileInfo", "Supervision", "WorkflowSettings", "describe_exit", "error_record"]
