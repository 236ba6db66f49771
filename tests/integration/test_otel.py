"""telemetry.otel: one span per attempt, a child of the request that enqueued the job, with its outcome."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import jobcron
from jobcron import telemetry
from jobcron.config import Config
from jobcron.daemon.tracing import Tracing
from jobcron.daemon.worker import Worker
from jobcron.errors import ConfigError
from tests import workflows

pytest.importorskip("opentelemetry.sdk")
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def traced_worker(make_config: Any, provider: TracerProvider) -> Worker:
    config: Config = make_config(
        workflows=workflows.ALL, retry={"in_process_attempts": 1}, scheduler_settings={"max_retries": 0}
    )
    worker = Worker(config)
    worker.tracing = Tracing(config.telemetry.trace_metadata_key, provider)
    return worker


def test_a_job_span_joins_the_request_that_enqueued_it(
    conn: Conn, make_config: Any, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    request_tracer = provider.get_tracer("app")
    with request_tracer.start_as_current_span("POST /reports") as request:
        # the application's side: its current trace context goes into the job's metadata
        carrier = telemetry.trace_context()
        assert carrier["traceparent"].startswith("00-")
        ok = jobcron.enqueue(conn, "noop", metadata={"trace_context": carrier})
    failing = jobcron.enqueue(conn, "permanent")
    worker = traced_worker(make_config, provider)
    assert worker.run_once() and worker.run_once()
    finished = {s.name: s for s in exporter.get_finished_spans()}
    job_span = finished["jobcron.job noop"]
    assert job_span.parent is not None and job_span.parent.span_id == request.get_span_context().span_id
    assert job_span.context.trace_id == request.get_span_context().trace_id
    assert job_span.kind == trace.SpanKind.CONSUMER
    assert job_span.attributes is not None and job_span.attributes["jobcron.job.id"] == ok
    assert job_span.attributes["jobcron.job.outcome"] == "completed"
    failed = finished["jobcron.job permanent"]
    assert failed.parent is None  # nothing to join: a trace of its own
    assert failed.attributes is not None and failed.attributes["jobcron.job.id"] == failing
    assert failed.status.status_code == trace.StatusCode.ERROR and failed.status.description


def test_spans_are_off_by_default_and_the_context_helper_is_safe(conn: Conn, make_config: Any) -> None:
    worker = Worker(make_config())
    assert worker.tracing is None
    assert telemetry.trace_context() == {}  # no span is current: an empty carrier, never an error


def test_otel_without_the_packages_is_a_config_error(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry, "available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'jobcron\[otel\]'"):
        Worker(make_config(telemetry={"otel": True}))
