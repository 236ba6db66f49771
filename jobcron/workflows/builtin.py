"""Small built-in workflows: `noop` (benchmarks, smoke tests) and `sleep` (a job that takes time)."""

from __future__ import annotations

from typing import Any

from jobcron.errors import InvalidJob
from jobcron.workflows.base import WorkflowContext


def noop(ctx: WorkflowContext) -> None:
    """Do nothing; the cheapest possible job."""
    return None


def sleep(ctx: WorkflowContext) -> dict[str, Any]:
    """Wait `metadata.seconds` (default 1); a cancel ends it early."""
    seconds = ctx.metadata.get("seconds", 1)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 86400:
        raise InvalidJob(f"sleep: metadata.seconds must be a number from 0 to 86400, got {seconds!r}")
    # only a cancel cuts it short: on shutdown it runs on within the grace period, like real work
    ctx.cancel_event.wait(seconds)
    ctx.check_cancelled()
    return {"slept_seconds": seconds}
