"""How an attempt ended, in one place: a result or an error (raised inline, or reported by the job
process) becomes the Outcome that `finish_job` writes. The retry policy lives here too."""

from __future__ import annotations

import json
import random
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from jobcron.client import DEFAULT_MAX_METADATA_BYTES, validate
from jobcron.config import Config
from jobcron.errors import InvalidInput, InvalidJob, JobCancelled, PermanentError
from jobcron.models import ClaimedJob, Outcome
from jobcron.workflows.base import FollowUp, Insight, WorkflowContext, WorkflowResult, WorkflowSettings

MAX_MESSAGE = 2000
MAX_TRACEBACK = 8000
# follow-up jobs one result may enqueue (enqueue_many is the tool for more)
MAX_FOLLOWUPS = 1000


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
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES

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
            max_metadata_bytes=config.job_processing.max_metadata_bytes,
        )


def workflow_settings(config: Config) -> WorkflowSettings:
    """The settings from config that workflows may read."""
    p = config.job_processing
    return WorkflowSettings(
        file_root=p.file_root,
        analysis_max_rows=p.analysis_max_rows,
        analysis_max_bytes=p.analysis_max_bytes,
        webhooks={h.name: h for h in config.notifications.webhooks},
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


def followup_rows(
    followups: list[FollowUp], job: ClaimedJob, max_metadata_bytes: int
) -> list[dict[str, Any]]:
    """Follow-up jobs as rows for `finish_job`, checked as jobcron.enqueue checks them."""
    if not isinstance(followups, list | tuple):
        raise PermanentError(f"followups must be a list of FollowUp, got {type(followups).__name__}")
    if len(followups) > MAX_FOLLOWUPS:
        raise PermanentError(f"{len(followups)} follow-up jobs, more than the limit of {MAX_FOLLOWUPS}")
    rows = []
    for index, item in enumerate(followups):
        if not isinstance(item, FollowUp):
            raise PermanentError(f"followups[{index}]: expected a FollowUp, got {type(item).__name__}")
        if item.job_type == "jobcron.webhook":
            raise PermanentError(
                f"followups[{index}]: jobcron.webhook jobs are made by the webhook outbox only"
            )
        fields = item.fields()
        if "user_id" not in fields and job.user_id is not None:
            fields["user_id"] = job.user_id
        try:
            checked = validate(fields, max_metadata_bytes=max_metadata_bytes)
        except InvalidInput as exc:
            raise PermanentError(f"followups[{index}] ({item.job_type!r}): {exc}") from None
        run_at = checked.get("run_at")
        rows.append(
            {
                "job_type": checked["job_type"],
                "user_id": checked.get("user_id"),
                "metadata": json.loads(checked["metadata"]) if "metadata" in checked else None,
                "priority": checked.get("priority"),
                "scheduled_at": None if run_at is None else run_at.isoformat(),
                "max_retries": checked.get("max_retries"),
                "timeout_seconds": checked.get("timeout_seconds"),
                "dedup_key": checked.get("dedup_key"),
                "business_description": checked.get("business_description"),
            }
        )
    return rows


def completed(
    result: WorkflowResult, job: ClaimedJob, max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
) -> Outcome:
    """The outcome of a successful attempt."""
    stored = json.loads(json.dumps(result.result, default=_json_default))
    followups = followup_rows(result.followups, job, max_metadata_bytes) if result.followups else []
    return Outcome.completed(stored, insight_rows(result.insights), followups)


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
        return Outcome.cancelled(record)
    if isinstance(exc, PermanentError):
        permanent = True
    max_retries = job.max_retries if job.max_retries is not None else policy.default_max_retries
    if not permanent and policy.retry_failed_jobs and job.retry_count < max_retries:
        return Outcome.retry(record, durable_delay(policy, job.retry_count))
    return Outcome.failed(record)


def interrupted_outcome(job: ClaimedJob, worker_id: str, why: str) -> Outcome:
    """Put a job back as pending without charging the attempt (shutdown)."""
    return Outcome.interrupted(
        plain_error(
            f"interrupted: {why}; put back without charging an attempt", "Interrupted", job, worker_id
        )
    )


@dataclass(frozen=True)
class Failure:
    """A workflow's error, wherever it ran: raised in this process, or reported by the job process."""

    kind: str
    message: str
    traceback: str = ""
    permanent: bool = False
    cancelled: bool = False  # a JobCancelled, or raised after a cancel reached the job

    @classmethod
    def of(cls, exc: BaseException, ctx: WorkflowContext) -> Failure:
        """The failure an exception raised by the workflow stands for."""
        return cls(
            kind=type(exc).__name__,
            message=str(exc) or type(exc).__name__,
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-MAX_TRACEBACK:],
            permanent=isinstance(exc, PermanentError),
            cancelled=isinstance(exc, JobCancelled) or ctx.cancel_event.is_set(),
        )


def from_failure(
    failure: Failure, job: ClaimedJob, ctx: WorkflowContext, policy: RunPolicy, worker_id: str
) -> Outcome:
    """THE mapping from a workflow's error to an outcome: cancelled, interrupted by a stop, or failed
    (a durable retry while retries remain, unless the error is permanent)."""
    error = plain_error(
        failure.message, "JobCancelled" if failure.cancelled else failure.kind, job, worker_id
    )
    if failure.traceback:
        error["traceback"] = failure.traceback
    if failure.cancelled or ctx.cancel_event.is_set():
        return Outcome.cancelled(error)
    if ctx.stop_event.is_set() and not failure.permanent:
        return interrupted_outcome(job, worker_id, f"shutdown while the job raised {failure.kind}")
    return failed_outcome(None, job, policy, worker_id, error=error, permanent=failure.permanent)


def from_result(result: WorkflowResult, job: ClaimedJob, policy: RunPolicy, worker_id: str) -> Outcome:
    """The outcome of a workflow that returned; a result that cannot be stored fails the job at once."""
    try:
        return completed(result, job, policy.max_metadata_bytes)
    except Exception as exc:
        return failed_outcome(exc, job, policy, worker_id, permanent=True)
