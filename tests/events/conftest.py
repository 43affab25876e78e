"""A real receiving HTTP server on loopback, and the orders and subscriptions the
webhook tests deliver."""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from core.breakers import circuit_breakers_reset
from core.models import OutboxMessage
from events.models import EventDelivery, EventSubscription
from events.selectors import topics_with_subscribers_forget
from events.tasks import deliveries_due_task
from flows.place import OrderLineRequest, order_place
from flows.transitions import order_transition_by_name
from orders.audit import order_event_record
from orders.models import Order, OrderEvent
from tests.conftest import stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory

HANDLER = "events.dispatch_order_event"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Analytical Way",
    "line2": "",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A loopback HTTP server that records every POST. `fail_next[path] = n` answers 500
    to the next n requests on that path; `delay` makes every answer that slow; it counts
    how many requests of one order it was answering at once (`overlaps`)."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0
    in_flight: dict[str, int] = field(default_factory=dict)
    overlaps: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def on(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            target = state["receiver"]
            order_id = json.loads(body).get("order_id", "")
            with target.lock:
                target.in_flight[order_id] = target.in_flight.get(order_id, 0) + 1
                if target.in_flight[order_id] > 1:
                    target.overlaps += 1
            time.sleep(target.delay)
            with target.lock:
                target.in_flight[order_id] -= 1
                target.received.append(Received(self.path, dict(self.headers), body))
                failing = target.fail_next.get(self.path, 0) > 0
                if failing:
                    target.fail_next[self.path] -= 1
            answer = b"boom: try later" if failing else b""
            self.send_response(500 if failing else 204)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _events_settings(settings: Any) -> Iterator[None]:
    settings.EVENTS_CONNECT_TIMEOUT_SECONDS = 1.0
    settings.EVENTS_READ_TIMEOUT_SECONDS = 2.0
    circuit_breakers_reset()
    # The per-process cache of subscribed topics outlives each test's rolled-back rows.
    topics_with_subscribers_forget()
    yield
    circuit_breakers_reset()
    topics_with_subscribers_forget()


def subscribe(url: str, *, name: str, topics: list[str] | None = None, **fields: Any) -> Any:
    return EventSubscription.objects.create(
        name=name, url=url, secret=f"secret-{name}", topics=topics or ["*"], **fields
    )


def confirmed_order() -> Order:
    """Place an order and confirm it in the test's transaction: its outbox is not run."""
    warehouse = WarehouseFactory()
    product = ProductFactory(price=1999, currency="EUR")
    stock_receive(product, warehouse, 5)
    order = order_place(
        customer=UserFactory(),
        email="ada@example.com",
        shipping_address=ADDRESS,
        lines=[OrderLineRequest(sku=product.sku, quantity=2)],
        actor=Actor.system(),
    )
    return order_transition_by_name(order_id=order.pk, transition="confirm", actor=Actor.system())


def payment_captured(order: Order) -> None:
    """Record a payment event for the order (as the ship use case does)."""
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        order_event_record(order=locked, type="payment.captured", change={"amount_captured": 1})


def events_messages(order: Order) -> list[OutboxMessage]:
    """The order's delivery messages, by the event sequence they carry."""
    sequences = dict(OrderEvent.objects.filter(order=order).values_list("id", "sequence"))
    messages = OutboxMessage.objects.filter(handler=HANDLER, payload__order_id=str(order.pk))
    return sorted(messages, key=lambda m: sequences[uuid.UUID(m.payload["event_id"])])


def make_due(subscription: EventSubscription) -> None:
    """Let the clock reach every pending retry (the schedule is minutes to hours)."""
    EventDelivery.objects.filter(subscription=subscription, status="pending").update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def send_due() -> None:
    """Run the scheduler's sweep: tasks run inline in tests, so each (subscription,
    order) it hands to the events queue is sent before it returns."""
    deliveries_due_task()
