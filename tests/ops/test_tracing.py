"""OpenTelemetry tracing through the real path: the API under uvicorn and a Celery worker
export their spans over OTLP/HTTP to a receiver on loopback that decodes them as a
collector would. A paid checkout is one trace, from the request's server span through its
SQL and its Stripe call into the worker's outbox handler and the warehouse call it makes,
whether the relay hands the work to Celery at once or the sweeper finds it later. With no
endpoint configured, nothing of the SDK is set up.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from core.models import OutboxMessage
from tests.conftest import api_key_for, new_idempotency_key, order_payload
from tests.support import asgi_server
from tests.support.processes import LOOPBACK, free_port, stop_process
from tests.support.worker import app_process_env, wait_for
from tests.worker import conftest as worker_tests
from tests.worker.conftest import GOOD_CARD, outbox_settled, warehouse_at

pytest_plugins = (
    "tests.support.redis_server",
    "tests.support.worker",
    "tests.support.fake_warehouse",
    "tests.support.fake_stripe",
    "tests.support.asgi_server",
)

# The real-worker tests' fixtures: fake Stripe as the provider, fake warehouses.
payments_at_fake_stripe = worker_tests.payments_at_fake_stripe
fake_warehouses = worker_tests.fake_warehouses

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0
SERVER = SpanProto.SpanKind.SPAN_KIND_SERVER
CLIENT = SpanProto.SpanKind.SPAN_KIND_CLIENT
CONSUMER = SpanProto.SpanKind.SPAN_KIND_CONSUMER


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


@dataclass
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    # (trace id, span id) of each linked span
    links: list[tuple[str, str]] = field(default_factory=list)
    pid: int = 0

    def mentions(self, text: str) -> bool:
        """Whether any string attribute (a URL, a statement) contains ``text``."""
        return any(isinstance(v, str) and text in v for v in self.attributes.values())


class OtlpReceiver:
    """A collector's OTLP/HTTP traces endpoint on loopback: POST /v1/traces with an
    ExportTraceServiceRequest (protobuf, optionally gzip or deflate); keeps every span."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if (
                    self.path != "/v1/traces"
                    or self.headers.get("Content-Type") != "application/x-protobuf"
                ):
                    self.send_error(404)
                    return
                receiver.accept(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def accept(self, request: ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name", "")),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=[(ln.trace_id.hex(), ln.span_id.hex()) for ln in span.links],
                            pid=int(resource.get("process.pid") or 0),
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans.extend(received)

    def received(self, predicate: Callable[[ReceivedSpan], bool]) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if predicate(span)]


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


def tracing_env(receiver: OtlpReceiver) -> dict[str, str]:
    """Tracing on, exporting to ``receiver`` every 100 ms; default service names."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }


def checkout_server_span(receiver: OtlpReceiver) -> ReceivedSpan:
    """The API's server span of the checkout (POST /api/v1/orders/)."""
    spans = wait_for(
        lambda: receiver.received(
            lambda s: (
                s.service == "oms-web"
                and s.kind == SERVER
                and s.name.startswith("POST")
                and s.mentions("/api/v1/orders/")
            )
        ),
        timeout=WAIT,
        what="the checkout's server span",
    )
    assert len(spans) == 1, spans
    span: ReceivedSpan = spans[0]
    return span


def in_trace(receiver: OtlpReceiver, trace_id: str) -> Callable[..., list[ReceivedSpan]]:
    def spans(**match: Any) -> list[ReceivedSpan]:
        return receiver.received(
            lambda s: (
                s.trace_id == trace_id
                and all(getattr(s, key) == value for key, value in match.items())
            )
        )

    return spans


def place_paid_order(server: Any, customer: Any, sku: str) -> dict[str, Any]:
    status, order = server.post(
        "/api/v1/orders/",
        {**order_payload([(sku, 1)]), "payment_method": GOOD_CARD},
        key=api_key_for(customer),
        headers={"Idempotency-Key": new_idempotency_key()},
        timeout=WAIT,
    )
    assert status == 201, order
    assert order["status"] == "confirmed", order
    body: dict[str, Any] = order
    return body


@pytest.mark.django_db(transaction=True)
def test_a_paid_checkout_is_one_trace_from_the_request_into_the_worker(
    celery_broker,
    start_worker,
    start_asgi_server,
    payments_at_fake_stripe,
    fake_warehouses,
    stocked_product,
    customer,
    otlp_receiver,
):
    # Given the API and a worker on one broker, both tracing to the receiver, and a
    # warehouse that accepts fulfilment requests
    fake = fake_warehouses(auto_callbacks=False)
    warehouse_at("main", fake)
    product = stocked_product(quantities={"main": 5}, price=2500)
    server = start_asgi_server(env={**app_process_env(celery_broker), **tracing_env(otlp_receiver)})
    worker = start_worker(env=tracing_env(otlp_receiver))

    # When a customer places and pays an order over HTTP
    order = place_paid_order(server, customer, product.sku)
    wait_for(
        lambda: fake.requests() and outbox_settled([order["id"]]),
        worker=worker,
        timeout=WAIT,
        what="the worker to route the order",
    )

    # Then the API exported the request's server span, and in its trace the SQL it ran
    # and its call to Stripe
    request = checkout_server_span(otlp_receiver)
    spans = in_trace(otlp_receiver, request.trace_id)
    assert request.parent_span_id == ""
    client_spans = spans(service="oms-web", kind=CLIENT)
    database = [s for s in client_spans if s.attributes.get("db.system") == "postgresql"]
    assert database, client_spans
    assert any(s.mentions("INSERT INTO") and s.mentions("orders_order") for s in database)
    stripe_calls = [s for s in client_spans if s.mentions(payments_at_fake_stripe.url)]
    assert stripe_calls, client_spans
    assert all(s.parent_span_id for s in stripe_calls)
    # ...and the stored work remembers the trace
    routing = OutboxMessage.objects.get(
        payload__order_id=order["id"], handler="fulfilment.route_order"
    )
    assert routing.trace_context["traceparent"].split("-")[1] == request.trace_id

    # And the worker's spans continue the same trace: the Celery task, the outbox handler
    # inside it, its SQL and the call to the warehouse
    handler = wait_for(
        lambda: spans(service="oms-worker", name="outbox fulfilment.route_order"),
        timeout=WAIT,
        what="the routing handler's span in the request's trace",
    )[0]
    assert handler.kind == CONSUMER
    assert handler.attributes["oms.outbox.message_id"] == routing.pk
    assert handler.attributes["oms.order_id"] == order["id"]
    assert handler.parent_span_id == request.span_id
    assert handler.links == []  # the task already was in the request's trace
    assert wait_for(
        lambda: spans(service="oms-worker", kind=CONSUMER, name="run/oms.core.outbox_handle"),
        timeout=WAIT,
        what="the Celery task's span in the request's trace",
    )
    warehouse_calls = wait_for(
        lambda: [
            s for s in spans(service="oms-worker", kind=CLIENT) if s.mentions(fake.requests_url)
        ],
        timeout=WAIT,
        what="the warehouse call's span",
    )
    assert [s.parent_span_id for s in warehouse_calls] == [handler.span_id]
    worker_sql = spans(service="oms-worker", kind=CLIENT)
    assert any(s.attributes.get("db.system") == "postgresql" for s in worker_sql)

    # And the worker's log lines inside the handler carry the trace id
    log_lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    traced = [line for line in log_lines if line.get("trace_id") == request.trace_id]
    assert traced, log_lines[-20:]
    assert all(len(line["span_id"]) == 16 for line in traced)


@pytest.mark.django_db(transaction=True)
def test_work_the_sweeper_dispatches_still_continues_the_requests_trace(
    celery_broker,
    start_worker,
    start_asgi_server,
    payments_at_fake_stripe,
    fake_warehouses,
    stocked_product,
    customer,
    otlp_receiver,
):
    # Given the API cannot reach the broker (its work waits in the outbox), both tracing
    fake = fake_warehouses(auto_callbacks=False)
    warehouse_at("main", fake)
    product = stocked_product(quantities={"main": 5}, price=2500)
    server = start_asgi_server(
        env={
            **app_process_env(celery_broker),
            "CELERY_BROKER_URL": f"redis://{LOOPBACK}:{free_port()}/0",
            **tracing_env(otlp_receiver),
        }
    )

    # When a customer places and pays an order, and only later a worker with the
    # scheduler comes up and sweeps the outbox
    order = place_paid_order(server, customer, product.sku)
    routing = OutboxMessage.objects.get(
        payload__order_id=order["id"], handler="fulfilment.route_order"
    )
    assert routing.status == OutboxMessage.Status.PENDING
    worker = start_worker(env=tracing_env(otlp_receiver), beat=True)
    wait_for(
        lambda: fake.requests() and outbox_settled([order["id"]]),
        worker=worker,
        timeout=WAIT,
        what="the sweeper's work to be handled",
    )

    # Then the handler's span is a child of the span that wrote the message, in the
    # request's trace, linked to the task the sweep sent (a trace of its own)
    request = checkout_server_span(otlp_receiver)
    spans = in_trace(otlp_receiver, request.trace_id)
    handler = wait_for(
        lambda: spans(service="oms-worker", name="outbox fulfilment.route_order"),
        timeout=WAIT,
        what="the routing handler's span in the request's trace",
    )[0]
    assert handler.parent_span_id == routing.trace_context["traceparent"].split("-")[2]
    assert handler.parent_span_id == request.span_id
    ((task_trace_id, task_span_id),) = handler.links
    assert task_trace_id != request.trace_id
    assert wait_for(
        lambda: otlp_receiver.received(
            lambda s: (
                (s.trace_id, s.span_id) == (task_trace_id, task_span_id)
                and s.service == "oms-worker"
                and s.name == "run/oms.core.outbox_handle"
            )
        ),
        timeout=WAIT,
        what="the linked Celery task's span",
    )
    # ...and what the handler did is in the request's trace too
    assert wait_for(
        lambda: [
            s for s in spans(service="oms-worker", kind=CLIENT) if s.mentions(fake.requests_url)
        ],
        timeout=WAIT,
        what="the warehouse call's span",
    )


@pytest.mark.django_db(transaction=True)
def test_each_gunicorn_worker_sets_up_tracing_after_the_fork(otlp_receiver, tmp_path):
    # Given the production server: gunicorn's master and two uvicorn workers, tracing on
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    with open(log_path, "wb") as log:
        master = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.asgi:application"]
            + ["--worker-class", "uvicorn_worker.UvicornWorker", "--workers", "2"]
            + ["--bind", f"{LOOPBACK}:{port}"],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "config.settings.test",
                "DATABASE_URL": asgi_server.test_database_url(),
                # Its own: gunicorn's master empties the directory when it starts, which
                # would take this process's counts off every later scrape.
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                **tracing_env(otlp_receiver),
            },
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def live() -> int:
            connection = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
            try:
                connection.request("GET", "/health/live")
                return connection.getresponse().status
            except OSError:
                return 0
            finally:
                connection.close()

        # When it answers requests
        wait_for(
            lambda: live() == 200 or master.poll() is not None,
            timeout=WAIT,
            what="gunicorn to answer",
        )
        assert master.poll() is None, log_path.read_text()
        for _ in range(10):
            assert live() == 200

        # Then the workers (not the master) exported a server span for each
        served = wait_for(
            lambda: (
                spans
                if len(
                    spans := otlp_receiver.received(
                        lambda s: s.kind == SERVER and s.mentions("/health/live")
                    )
                )
                >= 11
                else None
            ),
            timeout=WAIT,
            what="the requests' server spans",
        )
        assert {span.service for span in served} == {"oms-web"}
        assert master.pid not in {span.pid for span in served}
        assert all(span.pid for span in served)
    finally:
        stop_process(master)


PROBE = """
import json, logging, sys
import config.asgi
from celery.signals import worker_process_init
from django.conf import settings
from opentelemetry import trace
from core import tracing

worker_process_init.send(sender=None)
line = ""
if tracing.tracing_enabled():
    with trace.get_tracer("probe").start_as_current_span("probe") as span:
        handler = logging.getLogger().handlers[0]
        record = logging.LogRecord("probe", logging.INFO, "probe", 1, "traced", (), None)
        handler.filter(record)
        line = handler.format(record)
        ids = [trace.format_trace_id(span.get_span_context().trace_id),
               trace.format_span_id(span.get_span_context().span_id)]
else:
    ids = []
print(json.dumps({
    "enabled": tracing.tracing_enabled(),
    "provider": type(trace.get_tracer_provider()).__name__,
    # (redis-py imports the SDK's metrics package on its own when it is installed.)
    "loaded": [m for m in sys.modules if m.startswith(("opentelemetry.sdk.trace",
               "opentelemetry.exporter", "opentelemetry.instrumentation"))],
    "middleware": [m for m in settings.MIDDLEWARE if "opentelemetry" in m],
    "log_line": json.loads(line) if line else None,
    "ids": ids,
}))
"""


def run_probe(env: dict[str, str]) -> dict[str, Any]:
    """Load the ASGI application and a worker process's init in a fresh interpreter."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings.test", "LOG_FORMAT": "json"} | env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    found: dict[str, Any] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return found


def test_without_an_otlp_endpoint_nothing_of_tracing_is_set_up():
    # When the API and a worker process start with no OTLP endpoint configured
    found = run_probe({})

    # Then no tracer provider is installed, and neither the SDK's tracing, an exporter nor
    # an instrumentation is even loaded
    assert found["enabled"] is False
    assert found["provider"] == "ProxyTracerProvider"
    assert found["loaded"] == []
    assert found["middleware"] == []


def test_with_an_otlp_endpoint_the_sdk_is_set_up_and_log_lines_carry_the_trace(
    otlp_receiver,
):
    # When they start with an endpoint
    found = run_probe(tracing_env(otlp_receiver))

    # Then the SDK provider and the Django middleware are in place, and a log line
    # written inside a span names its trace and span
    assert found["enabled"] is True
    assert found["provider"] == "TracerProvider"
    assert found["middleware"], found
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in found["loaded"]
    trace_id, span_id = found["ids"]
    assert found["log_line"]["trace_id"] == trace_id
    assert found["log_line"]["span_id"] == span_id
    # ...and the span reached the receiver (flushed at exit)
    assert (
        wait_for(
            lambda: otlp_receiver.received(lambda s: s.name == "probe" and s.trace_id == trace_id),
            timeout=10,
            what="the probe's span",
        )[0].service
        == "oms-web"
    )
