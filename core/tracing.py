"""OpenTelemetry tracing, off unless an OTLP endpoint is configured.

`tracing_setup` runs once per process that serves requests or runs tasks: the ASGI/WSGI
modules, gunicorn's `post_fork` hook and Celery's `worker_process_init`, so each worker
process sets up its own provider after the fork, with its own export thread and
`process.pid`. With neither `OTEL_EXPORTER_OTLP_ENDPOINT` nor
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set it returns at once: no tracer provider, exporter
or instrumentation is loaded or installed, and the helpers below cost one flag check.

When on, it installs an SDK tracer provider exporting over OTLP/HTTP (protobuf) in
batches, and the maintained instrumentations: Django (a server span per request), psycopg
(a span per statement), requests (a client span per call to a warehouse or a webhook
subscriber, with `traceparent` sent along), urllib3 (the same for each call to Stripe,
whose gateway uses urllib3 directly; a call through requests gets one span, not two) and
Celery (producer and task spans,
the trace carried in the task headers). The exporter and the batch processor read the
standard `OTEL_*` variables (endpoint, headers, timeout, `OTEL_BSP_SCHEDULE_DELAY`, ...).

The outbox carries the trace across the table: `trace_context()` is stored on each
message written inside a request, and `outbox_span()` opens the handler's span as a child
of it, so work the sweeper dispatches minutes later still joins the request's trace.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACER_NAME = "oms"

_lock = threading.Lock()
# The pid tracing was set up in: a forked child must set up its own.
_set_up_in_pid: int | None = None


def tracing_configured() -> bool:
    """Whether an OTLP endpoint is configured (tracing is wanted)."""
    return any(os.environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def tracing_enabled() -> bool:
    """Whether this process set tracing up."""
    return _set_up_in_pid is not None and _set_up_in_pid == os.getpid()


def tracing_setup(*, default_service_name: str) -> bool:
    """Install the tracer provider and the instrumentations in this process, once, if an
    OTLP endpoint is configured; the service is `OTEL_SERVICE_NAME`, else
    `default_service_name`. Return whether tracing is on."""
    global _set_up_in_pid
    if not tracing_configured():
        return False
    with _lock:
        if _set_up_in_pid == os.getpid():
            return True
        _install(default_service_name)
        _set_up_in_pid = os.getpid()
    return True


def _install(default_service_name: str) -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    inherited = trace.get_tracer_provider()
    if isinstance(inherited, TracerProvider):
        # Set up before a fork (a server that loads the application in its master): the
        # global provider can be set only once, and the SDK restarts its export thread
        # in the child.
        provider = inherited
    else:
        # Which process: gunicorn and Celery run several of each service.
        attributes: dict[str, str | int] = {"process.pid": os.getpid()}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes[SERVICE_NAME] = default_service_name
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    # Instrumentors are process-wide singletons: in the child of a process that set up,
    # they are in place already, with the provider it inherited.
    for instrumentor in (
        DjangoInstrumentor(),
        PsycopgInstrumentor(),
        RequestsInstrumentor(),
        URLLib3Instrumentor(),
        CeleryInstrumentor(),
    ):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)


def tracing_shutdown() -> None:
    """Export what is still buffered (a process about to exit)."""
    if not tracing_enabled():
        return
    from opentelemetry import trace

    provider: Any = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


def trace_context() -> dict[str, str]:
    """The current span's W3C trace context (`traceparent`, `tracestate`) to store with
    work done later; empty when tracing is off or no span is active."""
    if not tracing_enabled():
        return {}
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def log_ids() -> tuple[str, str] | None:
    """The current trace and span ids in hex, for log lines; None when there are none."""
    if not tracing_enabled():
        return None
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id)


@contextlib.contextmanager
def outbox_span(
    name: str, *, stored_context: Mapping[str, str], attributes: Mapping[str, Any]
) -> Iterator[None]:
    """Run the block in a span that continues the stored trace (the request that wrote
    the work), linked to the span running now (the task that picked it up)."""
    if not tracing_enabled():
        yield
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    running = trace.get_current_span().get_span_context()
    parent = extract(dict(stored_context)) if stored_context else None
    stored = trace.get_current_span(parent).get_span_context() if parent else None
    links = []
    if stored is None or not stored.is_valid:
        parent = None  # nothing (usable) stored: a child of the running span
    elif running.is_valid and stored.trace_id != running.trace_id:
        links.append(trace.Link(running))
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        links=links,
        attributes=dict(attributes),
    ):
        yield
