"""Prometheus metrics of one daemon (optional extra `jobcron[metrics]`).

The worker's hot path only bumps counters (no query per job); queue depth and the oldest pending age
are sampled by a housekeeper duty every SAMPLE_SECONDS. Job types label the series; a type the
daemon has no workflow for is counted as "other", so a stray job_type cannot create series at will.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from jobcron import store
from jobcron.db import Connection
from jobcron.models import JobStatus, Outcome

SAMPLE_SECONDS = 10.0
OTHER = "other"
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
)


class Metrics:
    """Counters bumped by the daemon and gauges sampled on a timer, in a registry of their own."""

    def __init__(self, job_types: Iterable[str], registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.job_types = frozenset(job_types)
        r = self.registry
        self.claimed = Counter(
            "jobcron_jobs_claimed", "Jobs claimed by this daemon.", ["job_type"], registry=r
        )
        self.completed = Counter("jobcron_jobs_completed", "Jobs completed.", ["job_type"], registry=r)
        self.failed = Counter("jobcron_jobs_failed", "Jobs failed for good.", ["job_type"], registry=r)
        self.retried = Counter(
            "jobcron_jobs_retried",
            "Failed attempts sent back to pending for a retry.",
            ["job_type"],
            registry=r,
        )
        self.cancelled = Counter(
            "jobcron_jobs_cancelled", "Jobs cancelled while running.", ["job_type"], registry=r
        )
        self.interrupted = Counter(
            "jobcron_jobs_interrupted", "Jobs put back uncharged at shutdown.", ["job_type"], registry=r
        )
        self.duration = Histogram(
            "jobcron_job_duration_seconds",
            "Time from claim to outcome.",
            ["job_type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.rescued = Counter(
            "jobcron_jobs_rescued",
            "Jobs of lost workers rescued by this daemon, by new status.",
            ["status"],
            registry=r,
        )
        self.reconnects = Counter(
            "jobcron_db_reconnects", "Database reconnections after an outage.", ["connection"], registry=r
        )
        self._queue = QueueCollector()
        r.register(self._queue)
        self._by_status = {
            JobStatus.COMPLETED: self.completed,
            JobStatus.FAILED: self.failed,
            JobStatus.CANCELLED: self.cancelled,
        }

    def _type(self, job_type: str) -> str:
        return job_type if job_type in self.job_types else OTHER

    def job_claimed(self, job_type: str) -> None:
        """A job was claimed."""
        self.claimed.labels(self._type(job_type)).inc()

    def job_outcome(self, job_type: str, outcome: Outcome, seconds: float) -> None:
        """A job's attempt ended (recorded under the lease)."""
        label = self._type(job_type)
        if outcome.status == JobStatus.PENDING:
            (self.interrupted if outcome.uncharge else self.retried).labels(label).inc()
        else:
            self._by_status[outcome.status].labels(label).inc()
        self.duration.labels(label).observe(seconds)

    def jobs_rescued(self, statuses: Sequence[str]) -> None:
        """The rescue took jobs of lost workers."""
        for status in statuses:
            self.rescued.labels(status).inc()

    def db_reconnected(self, connection: str) -> None:
        """A connection came back after an outage."""
        self.reconnects.labels(connection).inc()

    def sample(self, conn: Connection) -> None:
        """Read the queue depth and the oldest pending age (a housekeeper duty, never per job)."""
        self._queue.update(store.ops_queue_sample(conn))


class QueueCollector:
    """Gauges of the last queue sample (exported as they were read, with no query at scrape time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sample: dict[str, Any] | None = None

    def update(self, sample: dict[str, Any]) -> None:
        """Keep the latest sample."""
        with self._lock:
            self._sample = sample

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """The gauges for a scrape."""
        with self._lock:
            sample = self._sample
        if sample is None:
            return []
        depth = GaugeMetricFamily("jobcron_queue_depth", "Jobs by state, sampled.", labels=["state"])
        due = int(sample["pending"]) - int(sample["pending_scheduled"])
        depth.add_metric(["pending_due"], due)
        depth.add_metric(["pending_scheduled"], int(sample["pending_scheduled"]))
        depth.add_metric(["processing"], int(sample["processing"]))
        depth.add_metric(["waiting"], int(sample.get("waiting") or 0))  # for their parents (depends_on)
        oldest = GaugeMetricFamily(
            "jobcron_oldest_pending_age_seconds", "How long the oldest due pending job has waited, sampled."
        )
        oldest.add_metric([], float(sample["oldest_age_seconds"] or 0.0))
        return [depth, oldest]


def serve(metrics: Metrics, port: int, addr: str) -> None:
    """Serve /metrics on a daemon thread (any other path: 404); OSError when the port cannot be had."""
    from jobcron.daemon.probes import serve_routes

    # the *_created twin of every counter only doubles the series
    disable_created_metrics()  # type: ignore[no-untyped-call]

    def scrape() -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry)

    serve_routes(addr, port, {"/metrics": scrape}, "jobcron-metrics")


__all__ = ["SAMPLE_SECONDS", "Metrics", "serve"]
