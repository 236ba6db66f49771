"""Jobs and outcomes, in the database's own vocabulary."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class JobStatus(enum.StrEnum):
    """The `processing_jobs.status` values (a CHECK constraint holds the same list)."""

    WAITING = "waiting"  # for its parents (depends_on): claimed by nobody until they end
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# nothing changes a job in these any more (a pending retry is not one of them)
FINAL_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds the lease of."""

    id: str
    job_type: str
    lease_token: str
    attempts: int
    retry_count: int
    max_retries: int | None
    file_id: str | None
    user_id: str | None
    business_description: str | None
    metadata: Any
    timeout_seconds: int | None
    created_at: datetime | None
    started_at: datetime | None
    priority: int
    cancel_requested: bool
    metadata_bytes: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ClaimedJob:
        """Build from a claim query's RETURNING row."""
        return cls(
            id=str(row["id"]),
            job_type=row["job_type"],
            lease_token=str(row["lease_token"]),
            attempts=row["attempts"],
            retry_count=row["retry_count"],
            max_retries=row["max_retries"],
            file_id=str(row["file_id"]) if row["file_id"] is not None else None,
            user_id=row["user_id"],
            business_description=row["business_description"],
            metadata=row["metadata"],
            timeout_seconds=row["timeout_seconds"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            priority=row["priority"],
            cancel_requested=row["cancel_requested"],
            metadata_bytes=row["metadata_bytes"] or 0,
        )


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as `finish_job` will write it; made by the named constructors below."""

    status: JobStatus
    result: Any = None
    insights: list[dict[str, Any]] = field(default_factory=list)
    followups: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    delay_seconds: float = 0.0
    retry_increment: int = 0
    uncharge: bool = False

    @classmethod
    def completed(
        cls, result: Any, insights: list[dict[str, Any]], followups: list[dict[str, Any]] | None = None
    ) -> Outcome:
        """The workflow returned: the result, its insight rows and its follow-up jobs are stored with the job."""
        return cls(JobStatus.COMPLETED, result=result, insights=insights, followups=followups or [])

    @classmethod
    def retry(cls, error: dict[str, Any], delay_seconds: float) -> Outcome:
        """A durable retry: back to pending, due after delay_seconds, one more retry counted."""
        return cls(JobStatus.PENDING, error=error, delay_seconds=delay_seconds, retry_increment=1)

    @classmethod
    def failed(cls, error: dict[str, Any]) -> Outcome:
        """Failed for good (a permanent error, or no retries left)."""
        return cls(JobStatus.FAILED, error=error)

    @classmethod
    def cancelled(cls, error: dict[str, Any]) -> Outcome:
        """Ended by a cancel."""
        return cls(JobStatus.CANCELLED, error=error)

    @classmethod
    def interrupted(cls, error: dict[str, Any]) -> Outcome:
        """Put back as pending without charging the attempt (the daemon stopped)."""
        return cls(JobStatus.PENDING, error=error, uncharge=True)

    @property
    def is_retry(self) -> bool:
        """Back to pending as a durable retry."""
        return self.status == JobStatus.PENDING and not self.uncharge

    @property
    def is_interrupted(self) -> bool:
        """Back to pending, uncharged."""
        return self.status == JobStatus.PENDING and self.uncharge

    @property
    def error_message(self) -> str | None:
        """The message stored in `error_message` (the last error)."""
        return None if self.error is None else str(self.error.get("message"))
