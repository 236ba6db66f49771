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

This module is the job process and the messages on its pipes; process.py is the daemon's side.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection as Pipe
from typing import Any, NamedTuple

from jobcron.config import Config
from jobcron.daemon.outcomes import (
    Failure,
    RunPolicy,
)
from jobcron.workflows.base import FileInfo, WorkflowContext, WorkflowResult, WorkflowSettings

TERMINATE_GRACE_SECONDS = 2.0
EXIT_ORPHANED = 70  # the job process found its daemon gone, or silent for too long
POLL_SECONDS = 0.02
PING_SECONDS = 1.0
PROGRESS_SEND_SECONDS = 0.25


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
    """One job for the job process to run: the fields of its WorkflowContext that cross the pipe."""

    job_id: str
    job_type: str
    attempt: int
    user_id: str | None
    business_description: str | None
    metadata: dict[str, Any]
    file: FileInfo | None
    created_at: datetime | None

    @classmethod
    def of(cls, ctx: WorkflowContext) -> JobMessage:
        """The message for a job whose context the daemon has built."""
        fields = {name: getattr(ctx, name) for name in cls._fields}
        fields["metadata"] = dict(ctx.metadata)  # a plain dict pickles, whatever mapping the context holds
        return cls(**fields)


class ChildAnswer(NamedTuple):
    """How a job ended in the job process: the workflow's result, or its error."""

    job_id: str
    result: WorkflowResult | None = None
    failure: Failure | None = None


class ProgressNote(NamedTuple):
    """A running job's latest ctx.progress(), on the answers pipe before its answer."""

    job_id: str
    fraction: float
    message: str | None


class Control(NamedTuple):
    """A word from the daemon about the job running now: "cancel", "stop", or "ping" (still here)."""

    word: str
    job_id: str | None = None


def send(pipe: Pipe, message: Any) -> None:
    # plain pickle, not Connection.send: its pickler copies a table of reducers for every message
    pipe.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))


def recv(pipe: Pipe) -> Any:
    return pickle.loads(pipe.recv_bytes())  # noqa: S301 - a pipe to our own child, nobody else's data


def orphan_after(config: Config) -> float:
    """How long a running job's process waits for its daemon before it ends itself.

    Shorter than the earliest rescue of its job: that needs `stale_after_seconds` without a
    heartbeat, and the last heartbeat may be one `heartbeat_interval_seconds` older than the last ping.
    """
    d = config.daemon
    return max(
        3 * ping_seconds(config),
        d.stale_after_seconds - d.heartbeat_interval_seconds - 2 * ping_seconds(config),
    )


def ping_seconds(config: Config) -> float:
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
    setup: ChildSetup = recv(jobs)
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
            message: JobMessage = recv(jobs)
        except EOFError:
            return
        ctx = state.begin(message)
        ctx.progress_sink = _progress_sender(answers, message.job_id)
        try:
            workflow = registry.get(message.job_type)
            answer = ChildAnswer(message.job_id, result=call_workflow(workflow, ctx, setup.policy))
        except BaseException as exc:
            answer = ChildAnswer(message.job_id, failure=Failure.of(exc, ctx))
            if isinstance(exc, MemoryError | KeyboardInterrupt | SystemExit):
                send(answers, answer)
                return  # a job process that ran out of memory is not trusted with the next job
        finally:
            state.end()
        send(answers, answer)
        structlog.contextvars.clear_contextvars()


def _progress_sender(answers: Pipe, job_id: str) -> Any:
    """ctx.progress in the job process: the latest report to the daemon, at most every PROGRESS_SEND_SECONDS.

    A report inside the pause is kept and goes with the next call after it; the daemon writes to the
    database less often still, so no report that matters waits long, and a tight loop costs no pipe
    write per call.
    """
    lock = threading.Lock()
    last = [0.0]

    def send_progress(fraction: float, message: str | None) -> None:
        now = time.monotonic()
        with lock:
            if now - last[0] < PROGRESS_SEND_SECONDS:
                return
            last[0] = now
            send(answers, ProgressNote(job_id, fraction, message))

    return send_progress


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
        # the message carries the context's own fields, by name
        ctx = WorkflowContext(**message._asdict(), logger=log, settings=self.settings)
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
            word: Control | None = recv(control) if heard else None
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
