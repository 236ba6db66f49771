"""OpenTelemetry for jobs (`pip install 'jobcron[otel]'`, `telemetry.otel: true`), off by default.

The daemon makes one span per attempt, `jobcron.job <job_type>` (kind CONSUMER), from the claim to the
record, with the job's id, type, attempt and outcome; a failed attempt sets the span's status to ERROR
with the error. An enqueuer that stores its trace context in the job's metadata joins the two: the job's
span becomes a child of the request that enqueued it, however long the job waited and on whichever host
it runs.

    metadata = {"report": 42, "trace_context": jobcron.telemetry.trace_context()}
    jobcron.enqueue(conn, "report", metadata=metadata)

`trace_context()` is the W3C carrier of the current span ({"traceparent": ..., "tracestate": ...}); any
language can write the same object (the key is `telemetry.trace_metadata_key`). The daemon exports
with the OTLP/HTTP exporter, configured by the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_SERVICE_NAME, ...), unless the process already has a tracer provider. Inline workflows run inside
the job's span, so their own instrumented calls nest under it; a workflow in the job process does not
(the span still covers its attempt).
"""

from __future__ import annotations

from typing import Any

TRACE_METADATA_KEY = "trace_context"
INSTALL_HINT = "telemetry.otel needs OpenTelemetry: pip install 'jobcron[otel]'"


def trace_context() -> dict[str, str]:
    """The current trace context as a W3C carrier, to store in a job's metadata (empty without OpenTelemetry)."""
    try:
        from opentelemetry import propagate
    except ImportError:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def tracer_provider() -> Any:
    """The process's tracer provider; an SDK one exporting over OTLP/HTTP when none was set up."""
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current  # the application or opentelemetry-instrument set one up
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "job_cron"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def available() -> bool:
    """Whether the OpenTelemetry API, SDK and OTLP exporter can be imported."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["INSTALL_HINT", "TRACE_METADATA_KEY", "available", "trace_context", "tracer_provider"]
