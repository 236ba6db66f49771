"""The workflow of the chaos run: it records every execution in a file, then behaves as its job asks.

Configured as "tests.chaos.workflows:chaos". Like any workflow it never touches the database: each
execution appends a `start` line and (unless its process dies first) an `end` line to the file named
by $JOBCRON_CHAOS_EXEC_LOG, one write(2) per line on an O_APPEND descriptor, so lines from several
daemons never interleave. The chaos checker reads that file to count executions and to rebuild who
ran when.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from jobcron.errors import PermanentError, TransientError
from jobcron.workflows.base import Insight, WorkflowContext, WorkflowResult

EXEC_LOG_ENV = "JOBCRON_CHAOS_EXEC_LOG"
STEP_SECONDS = 0.02


class DesignedFailure(Exception):
    """A failure the job was designed to have (an ordinary error: durable retries apply)."""


def _append(line: dict[str, Any]) -> None:
    path = os.environ.get(EXEC_LOG_ENV)
    if not path:
        raise PermanentError(f"${EXEC_LOG_ENV} is not set: the chaos workflow has nowhere to record")
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _wait(ctx: WorkflowContext, seconds: float) -> None:
    """Work for `seconds`, checking for cancel and shutdown between short steps (a cooperative job)."""
    deadline = time.monotonic() + seconds
    while True:
        ctx.check_cancelled()
        if ctx.stop_event.is_set():
            # the daemon is stopping: give the job back (run_inline turns this into an uncharged put-back)
            raise TransientError("stopping: the daemon asked the job to stop")
        left = deadline - time.monotonic()
        if left <= 0:
            return
        ctx.cancel_event.wait(min(STEP_SECONDS, left))


def chaos(ctx: WorkflowContext) -> WorkflowResult:
    """Record the execution, work `metadata.seconds`, then succeed or fail as `metadata.fail` says.

    fail: "never"; "always" (an ordinary error on every attempt); "permanent" (PermanentError);
    "flaky" (an ordinary error while the attempt number is at most `metadata.failures`).
    """
    base = {"job": ctx.job_id, "attempt": ctx.attempt, "pid": os.getpid(), "user": ctx.user_id}
    started = time.time()
    _append({**base, "ev": "start", "mono": time.monotonic(), "epoch": started})
    outcome = "error"
    try:
        _wait(ctx, float(ctx.metadata.get("seconds", 0)))
        mode = ctx.metadata.get("fail", "never")
        if mode == "always":
            raise DesignedFailure(f"designed failure (attempt {ctx.attempt})")
        if mode == "permanent":
            raise PermanentError("designed permanent failure")
        if mode == "flaky" and ctx.attempt <= int(ctx.metadata.get("failures", 1)):
            raise DesignedFailure(f"designed flaky failure (attempt {ctx.attempt})")
        outcome = "ok"
        # names this very run: the same pid can run the same attempt twice (a job put back uncharged)
        stamp = {"job": ctx.job_id, "attempt": ctx.attempt, "pid": os.getpid(), "start": started}
        return WorkflowResult(result=stamp, insights=[Insight("chaos_execution", stamp, 1.0)])
    except TransientError:
        outcome = "stopped"
        raise
    except Exception as exc:
        outcome = "cancelled" if ctx.cancelled else type(exc).__name__
        raise
    finally:
        _append({**base, "ev": "end", "outcome": outcome, "mono": time.monotonic(), "epoch": time.time()})
