"""Workflows the bench runs inside real daemons (configured as "bench.workflows:NAME")."""

from __future__ import annotations

import time

from jobcron.workflows.base import WorkflowContext


def stamp(ctx: WorkflowContext) -> dict[str, float]:
    """Record when the workflow started (epoch seconds), for insert-to-start latency."""
    return {"t": time.time()}
