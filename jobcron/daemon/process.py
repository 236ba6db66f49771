"""Process mode, the daemon's side: the warm job process started, fed one job at a time, supervised
(timeout, cancel, shutdown grace, crashes) and replaced when it must be killed.

The job process itself, and the messages on its pipes, are child.py.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

from jobcron.config import Config
from jobcron.daemon.child import (
    POLL_SECONDS,
    TERMINATE_GRACE_SECONDS,
    ChildAnswer,
    ChildSetup,
    Control,
    JobMessage,
    ProgressNote,
    orphan_after,
    ping_seconds,
    recv,
    send,
)
from jobcron.daemon.outcomes import (
    RunPolicy,
    failed_outcome,
    from_failure,
    from_result,
    interrupted_outcome,
    plain_error,
    workflow_settings,
)
from jobcron.models import ClaimedJob, Outcome
from jobcron.workflows.base import WorkflowContext, WorkflowResult


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


@dataclass
class _Child:
    proc: subprocess.Popen[bytes]
    jobs: Pipe
    answers: Pipe
    control: Pipe
    waiter: select.poll = field(default_factory=select.poll)

    def __post_init__(self) -> None:
        self.waiter.register(self.answers.fileno(), select.POLLIN)

    def answered(self, timeout: float) -> bool:
        """Whether an answer (or the end of the pipe) is there to read, waiting up to timeout."""
        return bool(self.waiter.poll(timeout * 1000))

    def close(self) -> None:
        for pipe in (self.jobs, self.answers, self.control):
            pipe.close()


class ChildRunner:
    """A warm job process that runs one job at a time for the daemon."""

    def __init__(self, config: Config, policy: RunPolicy, log: Any) -> None:
        self.setup = ChildSetup(
            workflows=dict(config.workflows),
            parent_pid=os.getpid(),
            log_level=config.logging.level,
            log_format="json" if config.logging.format == "auto" else config.logging.format,
            memory_limit_mb=config.job_processing.memory_limit_mb,
            policy=policy,
            orphan_after_seconds=orphan_after(config),
            settings=workflow_settings(config),
        )
        self.ping_seconds = ping_seconds(config)
        self.log = log
        self._child: _Child | None = None
        self.children_started = 0

    def start(self) -> None:
        """Start the warm job process now (it imports while the daemon goes on), if none runs."""
        if self._child is None or self._child.proc.poll() is not None:
            self._discard()
            self._child = self._spawn()

    def _spawn(self) -> _Child:
        job_r, job_w = os.pipe()
        answer_r, answer_w = os.pipe()
        control_r, control_w = os.pipe()
        code = f"from jobcron.daemon.child import child_main; child_main({job_r}, {answer_w}, {control_r})"
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", code],
                pass_fds=(job_r, answer_w, control_r),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            for fd in (job_r, answer_w, control_r):
                os.close(fd)
        child = _Child(
            proc, Pipe(job_w, readable=False), Pipe(answer_r, writable=False), Pipe(control_w, readable=False)
        )
        send(child.jobs, self.setup)
        self.children_started += 1
        return child

    def _discard(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None

    def kill(self, reason: str) -> int | None:
        """Terminate the child: SIGTERM, then SIGKILL after a short grace; returns its exit code."""
        child = self._child
        if child is None:
            return None
        proc = child.proc
        if proc.poll() is None:
            self.log.warning("job_process_terminating", child_pid=proc.pid, reason=reason)
            proc.terminate()
            try:
                proc.wait(TERMINATE_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._discard()
        return proc.returncode

    def close(self) -> None:
        """Stop the warm child (daemon shutdown): an idle child ends when its pipes close."""
        child = self._child
        if child is None:
            return
        child.close()
        try:
            child.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            self._child = child  # kill() needs it
            self.kill("daemon stopping")
        self._child = None

    def run(
        self, job: ClaimedJob, ctx: WorkflowContext, worker_id: str, policy: RunPolicy, sup: Supervision
    ) -> Outcome:
        """Send the job to the child and supervise it until it answers, dies or must be stopped."""
        self.start()
        child = self._child
        assert child is not None
        send(
            child.jobs,
            JobMessage.of(ctx),
        )
        started = last_ping = time.monotonic()
        cancel_since: float | None = None
        told: set[str] = set()
        while True:
            answer = _answer(child, job, ctx)
            if answer is not None:
                return self._outcome(answer, job, ctx, worker_id, policy)
            now = time.monotonic()
            if child.proc.poll() is not None:
                code = child.proc.returncode
                self._discard()
                if ctx.stop_event.is_set() and sup.stop_deadline() is not None:
                    return interrupted_outcome(
                        job, worker_id, f"job process ended during shutdown ({describe_exit(code)})"
                    )
                error = plain_error(
                    f"workflow process died: {describe_exit(code)}", "WorkerProcessDied", job, worker_id
                )
                return failed_outcome(None, job, policy, worker_id, error=error)
            if now - last_ping >= self.ping_seconds:
                send(child.control, Control("ping"))
                last_ping = now
            elapsed = now - started
            if ctx.stop_event.is_set():
                if "stop" not in told:
                    send(child.control, Control("stop", job.id))
                    told.add("stop")
                deadline = sup.stop_deadline()
                if deadline is not None and now >= deadline:
                    self.kill("shutdown grace period expired")
                    return interrupted_outcome(job, worker_id, "shutdown grace period expired")
            if ctx.cancel_event.is_set():
                if "cancel" not in told:
                    send(child.control, Control("cancel", job.id))
                    told.add("cancel")
                cancel_since = cancel_since or now
                if sup.force_cancel() or now - cancel_since >= sup.cancel_grace_seconds:
                    code = self.kill("cancelled")
                    error = plain_error(
                        f"cancelled; job process terminated ({describe_exit(code)})",
                        "JobCancelled",
                        job,
                        worker_id,
                    )
                    return Outcome.cancelled(error)
            late = self._past_limits(job, worker_id, policy, sup, elapsed)
            if late is not None:
                return late

    def _past_limits(
        self, job: ClaimedJob, worker_id: str, policy: RunPolicy, sup: Supervision, elapsed: float
    ) -> Outcome | None:
        """The job process killed, and why, when the job ran past its timeout or the processing ceiling."""
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
        return None

    def _outcome(
        self, answer: ChildAnswer, job: ClaimedJob, ctx: WorkflowContext, worker_id: str, policy: RunPolicy
    ) -> Outcome:
        if answer.failure is None:
            return from_result(answer.result or WorkflowResult(), job, policy, worker_id)
        if answer.failure.kind == "MemoryError":
            self.kill("MemoryError in the job process")  # not trusted with the next job
        return from_failure(answer.failure, job, ctx, policy, worker_id)


def _answer(child: _Child, job: ClaimedJob, ctx: WorkflowContext) -> ChildAnswer | None:
    """The job process's answer when one came within POLL_SECONDS; a progress note is kept in ctx."""
    if not child.answered(POLL_SECONDS):
        return None
    try:
        message: ChildAnswer | ProgressNote = recv(child.answers)
    except EOFError:
        return None  # it died: the caller sees it
    if isinstance(message, ProgressNote):
        if message.job_id == job.id:
            ctx.reported = (message.fraction, message.message)  # the lease writes it
        return None
    return message


__all__ = ["ChildRunner", "Supervision", "describe_exit"]
