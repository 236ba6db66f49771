"""What a workflow receives and returns; workflows import this, never the store or psycopg."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobcron.errors import JobCancelled

MAX_PROGRESS_MESSAGE = 200


@dataclass(frozen=True)
class FileInfo:
    """The `files` row a job points at."""

    id: str
    file_path: str
    original_name: str | None
    status: str


@dataclass(frozen=True)
class Insight:
    """One row for the `insights` table, stored in the transaction that completes the job."""

    insight_type: str
    content: Mapping[str, Any]
    confidence_score: float | None = None


@dataclass(frozen=True)
class FollowUp:
    """A job to enqueue when this one completes, in the very transaction that records its result.

    The fields are `jobcron.enqueue`'s (checked the same way); user_id defaults to this job's user.
    A follow-up is recorded as a child of the job that returned it (`jobs show` lists it). A crash
    before that transaction commits leaves neither the result nor the follow-ups: the job runs again.
    """

    job_type: str
    metadata: Mapping[str, Any] | None = None
    user_id: str | None = None
    priority: int | None = None
    run_at: datetime | str | None = None
    max_retries: int | None = None
    timeout_seconds: int | None = None
    dedup_key: str | None = None
    business_description: str | None = None

    def fields(self) -> dict[str, Any]:
        """The given fields, as jobcron.enqueue takes them."""
        names = (
            "job_type",
            "metadata",
            "user_id",
            "priority",
            "run_at",
            "max_retries",
            "timeout_seconds",
            "dedup_key",
            "business_description",
        )
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class WorkflowResult:
    """A workflow's return value: a JSON-serialisable result, optional insight rows, optional follow-up jobs."""

    result: Any = None
    insights: list[Insight] = field(default_factory=list)
    followups: list[FollowUp] = field(default_factory=list)


@dataclass(frozen=True)
class WorkflowSettings:
    """Settings from config that workflows may need."""

    file_root: str | None = None
    analysis_max_rows: int = 10_000_000
    analysis_max_bytes: int = 2 * 1024 * 1024 * 1024
    # notifications.webhooks by name: what the built-in jobcron.webhook workflow delivers to
    webhooks: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class WorkflowContext:
    """Everything a workflow may look at: the job, its parameters, its file, a logger, stop signals."""

    job_id: str
    job_type: str
    attempt: int
    user_id: str | None
    business_description: str | None
    metadata: Mapping[str, Any]
    file: FileInfo | None
    logger: Any
    settings: WorkflowSettings = field(default_factory=WorkflowSettings)
    created_at: datetime | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    # the latest ctx.progress() as (fraction, message); the daemon writes it with the job's heartbeat
    reported: tuple[float, str | None] | None = None
    # the job process passes each report on to its daemon (throttled); None in the daemon itself
    progress_sink: Callable[[float, str | None], None] | None = None

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job is: a fraction from 0 to 1 and an optional message.

        Cheap enough for a tight loop: it only keeps the latest report, which the daemon stores with the
        job at most about once a second (`jobs show`, `status`, the dashboard). A fraction that is not a
        number from 0 to 1 raises ValueError (TypeError for a non-number); a message is cut to 200
        characters.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(
                f"ctx.progress: fraction must be a number from 0 to 1, got {type(fraction).__name__}"
            )
        if not 0.0 <= fraction <= 1.0:  # NaN fails this too
            raise ValueError(f"ctx.progress: fraction must be a number from 0 to 1, got {fraction!r}")
        text = None if message is None else str(message)[:MAX_PROGRESS_MESSAGE]
        self.reported = (float(fraction), text)
        if self.progress_sink is not None:
            self.progress_sink(float(fraction), text)

    @property
    def should_stop(self) -> bool:
        """True when the daemon is shutting down or the job was cancelled."""
        return self.stop_event.is_set() or self.cancel_event.is_set()

    @property
    def cancelled(self) -> bool:
        """True when an operator asked to cancel this job."""
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the job was cancelled; long workflows call this between steps."""
        if self.cancel_event.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")


Workflow = Callable[[WorkflowContext], Any]
