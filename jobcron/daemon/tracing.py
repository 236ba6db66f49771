"""One OpenTelemetry span per attempt (jobcron.telemetry), started at execute and ended at record."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from jobcron.models import ClaimedJob, JobStatus, Outcome


class Tracing:
    """Spans of this daemon's attempts; `provider` is the process's (jobcron.telemetry) unless given."""

    def __init__(self, metadata_key: str, provider: Any = None) -> None:
        from opentelemetry import trace

        from jobcron.telemetry import tracer_provider

        self.metadata_key = metadata_key
        self.provider = provider if provider is not None else tracer_provider()
        self.tracer = self.provider.get_tracer("jobcron")
        self._trace = trace
        self._spans: dict[str, Any] = {}

    def _carrier(self, job: ClaimedJob) -> Any:
        """The trace context the enqueuer stored in the job's metadata (anything unreadable: none)."""
        metadata: Any = job.metadata
        if isinstance(metadata, str):  # the claim returns metadata as text; a bad value fails the job later
            try:
                metadata = json.loads(metadata)
            except (ValueError, RecursionError):
                return None
        return metadata.get(self.metadata_key) if isinstance(metadata, Mapping) else None

    @contextmanager
    def attempt(self, job: ClaimedJob) -> Iterator[None]:
        """Start the attempt's span (a child of the enqueuer's, when its metadata carries one) and make
        it current while the workflow runs; `recorded` ends it."""
        from opentelemetry import propagate

        carrier = self._carrier(job)
        parent = propagate.extract(carrier) if isinstance(carrier, dict) else None
        span = self.tracer.start_span(
            f"jobcron.job {job.job_type}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "jobcron",
                "jobcron.job.id": job.id,
                "jobcron.job.type": job.job_type,
                "jobcron.job.attempt": job.attempts,
            },
        )
        self._spans[job.id] = span
        with self._trace.use_span(span, end_on_exit=False):
            yield

    def recorded(self, job: ClaimedJob, outcome: Outcome) -> None:
        """End the attempt's span with its outcome."""
        span = self._spans.pop(job.id, None)
        if span is None:
            return
        status = str(outcome.status)
        span.set_attribute("jobcron.job.outcome", "retry" if outcome.is_retry else status)
        if outcome.status in (JobStatus.FAILED,) or outcome.is_retry:
            message = str((outcome.error or {}).get("message", ""))[:500]
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, message))
        span.end()


__all__ = ["Tracing"]
