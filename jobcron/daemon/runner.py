"""Run one claimed job's workflow: in-process retries, then exception -> outcome. No SQL here."""

from __future__ import annotations

import json
import random
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    stop_when_event_set,
    wait_exponential,
    wait_random,
)

from jobcron.config import Config
from jobcron.errors import InvalidJob, JobCancelled, PermanentError, TransientError
from jobcron.models import ClaimedJob, JobStatus, Outcome
from jobcron.workflows.base import Insight, Workflow, WorkflowContext, WorkflowResult, WorkflowSettings

# Errors worth retrying inside the same attempt (a blip); anything else goes to a durable retry.
IN_PROCESS_RETRYABLE = (TransientError, ConnectionError, TimeoutError)
MAX_MESSAGE = 2000
MAX_TRACEBACK = 8000


@dataclass(frozen=True)
class RunPolicy:
    """The slice of config that decides retries and outcomes."""

    in_process_attempts: int
    backoff_seconds: float
    backoff_max_seconds: float
    retry_failed_jobs: bool
    default_max_retries: int
    durable_backoff_seconds: float
    durable_backoff_max_seconds: float

    @classmethod
    def from_config(cls, config: Config) -> RunPolicy:
        """Take the retry settings from config."""
        r = config.retry
        return cls(
            in_process_attempts=r.in_process_attempts,
            backoff_seconds=r.in_process_backoff_seconds,
            backoff_max_seconds=r.in_process_backoff_max_seconds,
            retry_failed_jobs=config.scheduler_settings.retry_failed_jobs,
            default_max_retries=config.scheduler_settings.max_retries,
            durable_backoff_seconds=r.durable_backoff_seconds,
            durable_backoff_max_seconds=r.durable_backoff_max_seconds,
        )


def workflow_settings(config: Config) -> WorkflowSettings:
    """The settings from config that workflows may read."""
    p = config.job_processing
    return WorkflowSettings(
        file_root=p.file_root,
        analysis_max_rows=p.analysis_max_rows,
        analysis_max_bytes=p.analysis_max_bytes,
    )


def durable_delay(policy: RunPolicy, retry_count: int) -> float:
    """Exponential backoff with jitter for a job sent back to pending (retry_count is before this retry)."""
    growth: float = 2.0 ** min(retry_count, 30)
    ceiling = min(policy.durable_backoff_max_seconds, policy.durable_backoff_seconds * growth)
    # "equal jitter": half fixed, half random, so retries spread out but never come back at once
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def error_record(
    exc: BaseException, job: ClaimedJob, worker_id: str, kind: str | None = None
) -> dict[str, Any]:
    """One entry of a job's error history."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "attempt": job.attempts,
        "type": kind or type(exc).__name__,
        "message": (str(exc) or type(exc).__name__)[:MAX_MESSAGE],
        "traceback": tb[-MAX_TRACEBACK:],
        "at": datetime.now(UTC).isoformat(),
        "worker": worker_id,
    }


def plain_error(message: str, kind: str, job: ClaimedJob, worker_id: str) -> dict[str, Any]:
    """An error history entry with no exception behind it (timeouts, crashes of a child)."""
    return {
        "attempt": job.attempts,
        "type": kind,
        "message": message[:MAX_MESSAGE],
        "at": datetime.now(UTC).isoformat(),
        "worker": worker_id,
    }


def check_job(job: ClaimedJob, max_metadata_bytes: int) -> Mapping[str, Any]:
    """The job's metadata as a mapping, or InvalidJob saying what is wrong with the row."""
    if job.metadata_bytes > max_metadata_bytes:
        raise InvalidJob(
            f"metadata is {job.metadata_bytes} bytes, over job_processing.max_metadata_bytes ({max_metadata_bytes})"
        )
    metadata = job.metadata if job.metadata is not None else {}
    if isinstance(metadata, str):  # the claim returns it as text, so that a bad value fails only this job
        try:
            metadata = json.loads(metadata)
        except RecursionError:
            raise InvalidJob(
                "metadata is nested too deeply to be read (JSON nesting of about 1,000 levels)"
            ) from None
    if not isinstance(metadata, dict):
        raise InvalidJob(f"metadata must be a JSON object, got {type(metadata).__name__}")
    return metadata


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


def normalise_result(value: Any) -> WorkflowResult:
    """Accept a WorkflowResult or a plain JSON-serialisable value; check it can be stored."""
    result = value if isinstance(value, WorkflowResult) else WorkflowResult(result=value)
    try:
        # NaN and infinities are not JSON: caught here with a clear message, not at record time
        json.dumps(result.result, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"workflow result is not JSON-serialisable: {exc}") from None
    return result


def _json_copy(value: Any, what: str) -> Any:
    """value as plain JSON data, or PermanentError saying what is not JSON (NaN included)."""
    try:
        return json.loads(json.dumps(value, default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"{what} is not JSON-serialisable: {exc}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def insight_rows(insights: list[Insight]) -> list[dict[str, Any]]:
    """Insights as rows for `finish_job`'s jsonb_to_recordset."""
    rows = []
    for item in insights:
        score = item.confidence_score
        if score is not None and not 0 <= score <= 1:
            raise PermanentError(f"insight {item.insight_type!r} has confidence_score {score} outside 0..1")
        rows.append(
            {
                "insight_type": item.insight_type,
                "content": _json_copy(item.content, f"insight {item.insight_type!r} content"),
                "confidence_score": None if score is None else round(float(score), 2),
            }
        )
    return rows


def completed(result: WorkflowResult) -> Outcome:
    """The outcome of a successful attempt."""
    stored = json.loads(json.dumps(result.result, default=_json_default))
    return Outcome(JobStatus.COMPLETED, result=stored, insights=insight_rows(result.insights))


def failed_outcome(
    exc: BaseException | None,
    job: ClaimedJob,
    policy: RunPolicy,
    worker_id: str,
    *,
    error: dict[str, Any] | None = None,
    permanent: bool = False,
) -> Outcome:
    """The outcome of a failed attempt: a durable retry while retries remain, else failed."""
    record = (
        error if error is not None else error_record(exc or RuntimeError("unknown error"), job, worker_id)
    )
    if isinstance(exc, JobCancelled):
        return Outcome(JobStatus.CANCELLED, error=record)
    if isinstance(exc, PermanentError):
        permanent = True
    max_retries = job.max_retries if job.max_retries is not None else policy.default_max_retries
    if not permanent and policy.retry_failed_jobs and job.retry_count < max_retries:
        return Outcome(
            JobStatus.PENDING,
            error=record,
            delay_seconds=durable_delay(policy, job.retry_count),
            retry_increment=1,
        )
    return Outcome(JobStatus.FAILED, error=record)


def interrupted_outcome(job: ClaimedJob, worker_id: str, why: str) -> Outcome:
    """Put a job back as pending without charging the attempt (shutdown)."""
    return Outcome(
        JobStatus.PENDING,
        error=plain_error(
            f"interrupted: {why}; put back without charging an attempt", "Interrupted", job, worker_id
        ),
        uncharge=True,
    )


def run_inline(
    workflow: Workflow, ctx: WorkflowContext, job: ClaimedJob, policy: RunPolicy, worker_id: str
) -> Outcome:
    """Run the workflow in this process and turn whatever happens into an outcome."""
    try:
        result = call_workflow(workflow, ctx, policy)
        return completed(result)
    except JobCancelled as exc:
        return failed_outcome(exc, job, policy, worker_id)
    except Exception as exc:
        if ctx.cancel_event.is_set():
            return Outcome(JobStatus.CANCELLED, error=error_record(exc, job, worker_id, "JobCancelled"))
        if ctx.stop_event.is_set() and not isinstance(exc, PermanentError):
            return interrupted_outcome(job, worker_id, f"shutdown while the job raised {type(exc).__name__}")
        return failed_outcome(exc, job, policy, worker_id)
