"""Workflows used by the tests, configured as "tests.workflows:NAME"."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from jobcron.errors import InvalidJob, PermanentError, TransientError
from jobcron.workflows.base import FollowUp, Insight, WorkflowContext, WorkflowResult

ALL = {
    name: f"tests.workflows:{name}"
    for name in (
        "boom",
        "permanent",
        "flaky",
        "needs_key",
        "with_insights",
        "slow",
        "record",
        "unserialisable",
        "segfault",
        "exit_now",
        "hog",
        "hang",
        "cooperative",
        "nan_result",
        "progress_loop",
        "bad_progress",
        "spawn",
    )
}


def boom(ctx: WorkflowContext) -> None:
    """Always fails with an ordinary error."""
    raise ValueError("boom: something broke")


def permanent(ctx: WorkflowContext) -> None:
    """Fails in a way retrying cannot fix."""
    raise PermanentError("permanent: the input can never work")


def flaky(ctx: WorkflowContext) -> dict[str, Any]:
    """Fails transiently `metadata.failures` times (counted in a file), then succeeds."""
    counter = Path(ctx.metadata["counter"])
    seen = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(seen + 1))
    if seen < int(ctx.metadata.get("failures", 1)):
        raise TransientError(f"flaky: failure {seen + 1}")
    return {"calls": seen + 1}


def needs_key(ctx: WorkflowContext) -> dict[str, Any]:
    """Needs metadata.key; anything else is invalid input."""
    if "key" not in ctx.metadata:
        raise InvalidJob("needs_key: metadata.key is required")
    return {"key": ctx.metadata["key"]}


def with_insights(ctx: WorkflowContext) -> WorkflowResult:
    """Returns a result and two insights."""
    return WorkflowResult(
        result={"job": ctx.job_id},
        insights=[
            Insight("summary", {"text": "two insights"}, 0.9),
            Insight("detail", {"n": 2}, 0.5),
        ],
    )


def slow(ctx: WorkflowContext) -> WorkflowResult:
    """Sleeps metadata.seconds ignoring shutdown (a stubborn job), appends its start to metadata.log."""
    log = ctx.metadata.get("log")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"start {ctx.job_id} {os.getpid()} {time.time()}\n")
    time.sleep(float(ctx.metadata.get("seconds", 1)))
    return WorkflowResult(
        result={"slept": ctx.metadata.get("seconds", 1)}, insights=[Insight("slow", {"done": True}, 1.0)]
    )


def record(ctx: WorkflowContext) -> WorkflowResult:
    """Appends one line per execution to metadata.log (job id, pid, epoch time), then returns an insight."""
    with open(ctx.metadata["log"], "a", encoding="utf-8") as fh:
        fh.write(f"{ctx.job_id} {os.getpid()} {time.time():.6f}\n")
    delay = float(ctx.metadata.get("seconds", 0))
    if delay:
        time.sleep(delay)
    return WorkflowResult(result={"ok": True}, insights=[Insight("record", {"job": ctx.job_id}, 1.0)])


def unserialisable(ctx: WorkflowContext) -> Any:
    """Returns something that cannot be stored as JSON."""
    return {"when": object()}


def segfault(ctx: WorkflowContext) -> None:
    """Crashes its process with SIGSEGV."""
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def exit_now(ctx: WorkflowContext) -> None:
    """Ends its process without cleanup."""
    os._exit(7)


def hog(ctx: WorkflowContext) -> None:
    """Allocates without bound."""
    chunks = []
    while True:
        chunks.append(bytearray(50 * 1024 * 1024))


def hang(ctx: WorkflowContext) -> None:
    """Ignores every request to stop."""
    while True:
        time.sleep(0.1)


def cooperative(ctx: WorkflowContext) -> None:
    """Runs until cancelled, checking between steps."""
    while True:
        ctx.check_cancelled()
        time.sleep(0.02)


def nan_result(ctx: WorkflowContext) -> dict[str, float]:
    """Returns a value JSON cannot hold."""
    return {"mean": float("nan")}


def progress_loop(ctx: WorkflowContext) -> dict[str, int]:
    """Reports progress as fast as it can for metadata.seconds, then returns how many reports it made."""
    seconds = float(ctx.metadata.get("seconds", 3))
    began = time.monotonic()
    calls = 0
    while (elapsed := time.monotonic() - began) < seconds:
        ctx.progress(min(elapsed / seconds, 1.0), f"step {calls}")
        calls += 1
    return {"calls": calls}


def bad_progress(ctx: WorkflowContext) -> None:
    """Reports a fraction that is not one."""
    ctx.progress(float(ctx.metadata.get("fraction", 1.5)))


def spawn(ctx: WorkflowContext) -> WorkflowResult:
    """Returns metadata.followups (a list of FollowUp fields) as follow-up jobs; metadata.log: one line per run."""
    if ctx.metadata.get("log"):
        with open(ctx.metadata["log"], "a", encoding="utf-8") as fh:
            fh.write(f"{ctx.job_id} {os.getpid()}\n")
    wanted = ctx.metadata.get("followups", [])
    return WorkflowResult(result={"spawned": len(wanted)}, followups=[FollowUp(**f) for f in wanted])
