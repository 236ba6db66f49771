"""Inline execution: call the workflow in the daemon's own thread, with in-process retries."""

from __future__ import annotations

import random

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    stop_when_event_set,
    wait_exponential,
    wait_random,
)

from jobcron.daemon.outcomes import Failure, RunPolicy, from_failure, from_result, normalise_result
from jobcron.errors import TransientError
from jobcron.models import ClaimedJob, Outcome
from jobcron.workflows.base import Workflow, WorkflowContext, WorkflowResult

# Errors worth retrying inside the same attempt (a blip); anything else goes to a durable retry.
IN_PROCESS_RETRYABLE = (TransientError, ConnectionError, TimeoutError)


def call_workflow(workflow: Workflow, ctx: WorkflowContext, policy: RunPolicy) -> WorkflowResult:
    """Call the workflow, retrying transient errors in-process (bounded, jittered, interruptible)."""
    try:
        # the first try is a plain call: most jobs never need the retry machinery, and building it
        # costs more than a small job itself
        value = workflow(ctx)
    except IN_PROCESS_RETRYABLE as exc:
        if policy.in_process_attempts <= 1 or ctx.should_stop:
            raise
        _log_retry(ctx, 1, exc)
        ctx.cancel_event.wait(policy.backoff_seconds + random.uniform(0, policy.backoff_seconds))
        if ctx.should_stop:
            raise
        value = _retrying(ctx, policy)(workflow, ctx)
    return normalise_result(value)


def _retrying(ctx: WorkflowContext, policy: RunPolicy) -> Retrying:
    """Tries 2..N after a transient error: exponential backoff (doubling from the first wait) plus jitter."""
    return Retrying(
        retry=retry_if_exception_type(IN_PROCESS_RETRYABLE),
        stop=stop_any(
            stop_after_attempt(policy.in_process_attempts - 1),
            stop_when_event_set(ctx.stop_event),
            stop_when_event_set(ctx.cancel_event),
        ),
        wait=wait_exponential(multiplier=policy.backoff_seconds * 2, max=policy.backoff_max_seconds)
        + wait_random(0, policy.backoff_seconds),
        sleep=ctx.cancel_event.wait,  # type: ignore[arg-type]  # returns a bool tenacity ignores
        before_sleep=lambda state: _log_retry(
            ctx, state.attempt_number + 1, state.outcome.exception() if state.outcome else None
        ),
        reraise=True,
    )


def _log_retry(ctx: WorkflowContext, failed_try: int, exc: BaseException | None) -> None:
    ctx.logger.warning("job_attempt_retrying", in_process_try=failed_try, error=repr(exc))


def run_inline(
    workflow: Workflow, ctx: WorkflowContext, job: ClaimedJob, policy: RunPolicy, worker_id: str
) -> Outcome:
    """Run the workflow in this process and turn whatever happens into an outcome."""
    try:
        result = call_workflow(workflow, ctx, policy)
    except Exception as exc:
        return from_failure(Failure.of(exc, ctx), job, ctx, policy, worker_id)
    return from_result(result, job, policy, worker_id)
