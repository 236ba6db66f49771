"""Process mode: run workflows in a supervised child process so timeouts, cancels and crashes end only the job.

One warm job process per daemon, started with the daemon and reused from job to job (a job costs a
pipe round trip, not a process start); it is replaced when it must be killed (timeout, forced cancel,
shutdown), when it dies (segfault, os._exit, OOM) or after a MemoryError. It is a fresh interpreter
(`python -c`), so it shares no database connection, lock or thread with the daemon, and no
multiprocessing machinery either: two pipes carry typed messages (jobs and answers on one, cancel,
stop and the daemon's pings on the other), so nothing outlives the daemon when it stops.

The job process ends itself when its daemon is gone (the control pipe closes) or stops answering
while a job runs (no ping within `orphan_after`: the daemon is frozen, SIGSTOP or a paused VM): the
daemon's lease expires a little later and another daemon may run the job again, never at the same
time as this process.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection as Pipe
from typing import Any, NamedTuple

from jobcron.config import Config
from jobcron.daemon.outcomes import (
    Failure,
    RunPolicy,
    failed_outcome,
    from_failure,
    from_result,
    interrupted_outcome,
    plain_error,
    workflow_settings,
)
from jobcron.models import ClaimedJob, Outcome
from jobcron.workflows.base import FileInfo, WorkflowContext, WorkflowResult, WorkflowSettings

TERMINATE_GRACE_SECONDS = 2.0
EXIT_ORPHANED = 70  # the job process found its daemon gone, or silent for too long
POLL_SECONDS = 0.02
PING_SECONDS = 1.0


@dataclass(frozen=True)
class ChildSetup:
    """What a job process needs to build its own registry and logging, sent as its first message."""

    workflows: dict[str, str]
    parent_pid: int
    log_level: str
    log_format: str
    memory_limit_mb: int | None
    policy: RunPolicy
    orphan_after_seconds: float
    settings: WorkflowSettings


# The messages are named tuples: typed, and pickled as cheaply as plain tuples (a dataclass costs a
# good part of a noop job's round trip).
class JobMessage(NamedTuple):
    """One job for the job process to run."""

    job_id: str
    job_type: str
    attempt: int
    user_id: str | None
    business_description: str | None
    metadata: dict[str, Any]
    file: FileInfo | None
    created_at: datetime | None


class ChildAnswer(NamedTuple):
    """How a job ended in the job process: the workflow's result, or its error."""

    job_id: str
    result: WorkflowResult | None = None
    failure: Failure | None = None


class Control(NamedTuple):
    """A word from the daemon about the job running now: "cancel", "stop", or "ping" (still here)."""

    word: str
    job_id: str | None = None


def _send(pipe: Pipe, message: Any) -> None:
    # plain pickle, not Connection.send: its pickler copies a table of reducers for every message
    pipe.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))


def _recv(pipe: Pipe) -> Any:
    return pickle.loads(pipe.recv_bytes())  # noqa: S301 - a pipe to our own child, nobody else's data


def orphan_after(config: Config) -> float:
    """How long a running job's process waits for its daemon before it ends itself.

    Shorter than the earliest rescue of its job: that needs `stale_after_seconds` without a
    heartbeat, and the last heartbeat may be one `heartbeat_interval_seconds` older than the last ping.
    """
    d = config.daemon
    return max(
        3 * _ping_seconds(config),
        d.stale_after_seconds - d.heartbeat_interval_seconds - 2 * _ping_seconds(config),
    )


def _ping_seconds(config: Config) -> float:
    return min(PING_SECONDS, config.daemon.stale_after_seconds / 10)


# --- the job process --------------------------------------------------------------------------------


def child_main(job_fd: int, answer_fd: int, control_fd: int) -> None:
    """The job process: receive a job, run it, send back the result or the error; until told to end."""
    import resource

    import structlog

    from jobcron import logs
    from jobcron.daemon.inline import call_workflow
    from jobcron.workflows import Registry

    # the daemon handles signals; the job process only stops when told, killed or orphaned
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    jobs, answers, control = (
        Pipe(job_fd, writable=False),
        Pipe(answer_fd, readable=False),
        Pipe(control_fd, writable=False),
    )
    setup: ChildSetup = _recv(jobs)
    # a daemon killed outright (kill -9, OOM) must not leave its job running: the job is rescued and
    # run again elsewhere, and an orphan would run it twice at once (and past the per-user limit)
    _die_with_parent(setup.parent_pid)
    if setup.memory_limit_mb:
        limit = setup.memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logs.configure(setup.log_level, setup.log_format)
    registry = Registry(setup.workflows)
    state = _ChildState(structlog.get_logger().bind(child_pid=os.getpid()), setup.settings)
    threading.Thread(target=_listen, args=(control, state, setup.orphan_after_seconds), daemon=True).start()
    while True:
        try:
            message: JobMessage = _recv(jobs)
        except EOFError:
            return
        ctx = state.begin(message)
        try:
            workflow = registry.get(message.job_type)
            answer = ChildAnswer(message.job_id, result=call_workflow(workflow, ctx, setup.policy))
        except BaseException as exc:
            answer = ChildAnswer(message.job_id, failure=Failure.of(exc, ctx))
            if isinstance(exc, MemoryError | KeyboardInterrupt | SystemExit):
                _send(answers, answer)
                return  # a job process that ran out of memory is not trusted with the next job
        finally:
            state.end()
        _send(answers, answer)
        structlog.contextvars.clear_contextvars()


@dataclass
class _ChildState:
    """The job the job process runs now, shared by its main thread and its control listener."""

    logger: Any
    settings: WorkflowSettings
    lock: threading.Lock = field(default_factory=threading.Lock)
    ctx: WorkflowContext | None = None
    last_word: float = field(default_factory=time.monotonic)
    # words about a job that came before the job itself: the two pipes are read by two threads
    early: dict[str, set[str]] = field(default_factory=dict)

    def begin(self, message: JobMessage) -> WorkflowContext:
        import structlog

        log = structlog.get_logger().bind(
            job_id=message.job_id, job_type=message.job_type, child_pid=os.getpid()
        )
        ctx = WorkflowContext(
            job_id=message.job_id,
            job_type=message.job_type,
            attempt=message.attempt,
            user_id=message.user_id,
            business_description=message.business_description,
            metadata=message.metadata,
            file=message.file,
            logger=log,
            settings=self.settings,
            created_at=message.created_at,
        )
        with self.lock:
            self.ctx = ctx
            self.last_word = time.monotonic()
            words = self.early.pop(message.job_id, set())
            self.early.clear()
        if "cancel" in words:
            ctx.cancel_event.set()
        if "stop" in words:
            ctx.stop_event.set()
        return ctx

    def end(self) -> None:
        with self.lock:
            self.ctx = None


def _listen(control: Pipe, state: _ChildState, silence_limit: float) -> None:
    """Mirror the daemon's words into the running job's events; end the process when the daemon is
    gone, or silent for `silence_limit` seconds while a job runs."""
    while True:
        try:
            heard = control.poll(min(PING_SECONDS, silence_limit / 10))
            word: Control | None = _recv(control) if heard else None
        except (EOFError, OSError):
            os._exit(EXIT_ORPHANED)
        with state.lock:
            if word is not None:
                state.last_word = time.monotonic()
            ctx = state.ctx
            silent = ctx is not None and time.monotonic() - state.last_word > silence_limit
            if word is not None and word.job_id is not None and (ctx is None or word.job_id != ctx.job_id):
                state.early.setdefault(word.job_id, set()).add(word.word)
        if silent:
            assert ctx is not None
            ctx.logger.error("job_process_orphaned", silent_seconds=round(silence_limit, 1))
            os._exit(EXIT_ORPHANED)
        if word is None or ctx is None or word.job_id != ctx.job_id:
            continue
        if word.word == "cancel":
            ctx.cancel_event.set()
        elif word.word == "stop":
            ctx.stop_event.set()


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the daemon dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(EXIT_ORPHANED)


# --- the daemon's side --------------------------------------------------------------------------------


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
        self.ping_seconds = _ping_seconds(config)
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
        _send(child.jobs, self.setup)
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
        _send(
            child.jobs,
            JobMessage(
                job_id=job.id,
                job_type=job.job_type,
                attempt=job.attempts,
                user_id=job.user_id,
                business_description=job.business_description,
                metadata=dict(ctx.metadata),
                file=ctx.file,
                created_at=job.created_at,
            ),
        )
        started = last_ping = time.monotonic()
        cancel_since: float | None = None
        told: set[str] = set()
        while True:
            if child.answered(POLL_SECONDS):
                try:
                    answer: ChildAnswer = _recv(child.answers)
                except EOFError:
                    pass
                else:
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
                _send(child.control, Control("ping"))
                last_ping = now
            elapsed = now - started
            if ctx.stop_event.is_set():
                if "stop" not in told:
                    _send(child.control, Control("stop", job.id))
                    told.add("stop")
                deadline = sup.stop_deadline()
                if deadline is not None and now >= deadline:
                    self.kill("shutdown grace period expired")
                    return interrupted_outcome(job, worker_id, "shutdown grace period expired")
            if ctx.cancel_event.is_set():
                if "cancel" not in told:
                    _send(child.control, Control("cancel", job.id))
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


__all__ = ["ChildRunner", "Supervision", "describe_exit"]
