"""Order events to subscribed services, through a real receiving HTTP server on loopback:
signed, filtered by topic, once per subscriber, retried after a failure."""

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.actors import Actor
from core.breakers import circuit_breakers_reset
from core.models import OutboxMessage
from core.outbox import outbox_handle
from core.signing import SIGNATURE_HEADER, verify
from events.errors import EventDeliveriesIncomplete
from events.models import EventDelivery, EventSubscription
from events.selectors import topics_with_subscribers_forget
from flows.place import OrderLineRequest, order_place
from flows.transitions import order_transition_by_name
from orders.models import Order, OrderStatusChange
from tests.conftest import stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory

pytestmark = pytest.mark.django_db

HANDLER = "events.deliver_order_event"
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


@dataclass
class Receiver:
    """A loopback HTTP server that records every POST; `fail_next[path] = n` answers
    500 to the next n requests on that path."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)
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
            with target.lock:
                target.received.append(Received(self.path, dict(self.headers), body))
                failing = target.fail_next.get(self.path, 0) > 0
                if failing:
                    target.fail_next[self.path] -= 1
            self.send_response(500 if failing else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

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


def events_message(topic: str = "order.confirmed") -> OutboxMessage:
    return OutboxMessage.objects.get(topic=topic, handler=HANDLER)


def test_confirmed_order_delivers_one_signed_event_per_matching_subscription(receiver):
    # Given two subscriptions to every topic
    first = subscribe(receiver.url("/analytics"), name="analytics")
    second = subscribe(receiver.url("/crm"), name="crm", topics=["order.confirmed"])
    order = confirmed_order()
    change = OrderStatusChange.objects.get(order=order, to_status="confirmed")
    message = events_message()
    assert message.queue == "events"

    # When the outbox message is handled
    assert outbox_handle(message.pk) is True

    # Then each receiver got one event, signed with its own secret
    event_key = f"order-status-change-{change.pk}"
    for subscription, path in [(first, "/analytics"), (second, "/crm")]:
        (request,) = receiver.on(path)
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Idempotency-Key"] == event_key
        verify(request.body, request.headers[SIGNATURE_HEADER], subscription.secret)
        event = json.loads(request.body)
        assert event == {
            "id": event_key,
            "type": "order.confirmed",
            "created_at": change.created_at.isoformat(),
            "data": message.payload,
        }
        assert event["data"]["order_id"] == str(order.pk)
        delivery = EventDelivery.objects.get(subscription=subscription)
        assert (delivery.status, delivery.attempts, delivery.event_key) == (
            "delivered",
            1,
            event_key,
        )
        assert delivery.delivered_at is not None
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DONE


def test_subscriptions_get_only_their_topics_and_inactive_ones_nothing(receiver):
    # Given subscriptions to other topics, to every topic, and an inactive one
    subscribe(receiver.url("/shipping"), name="shipping", topics=["order.shipped"])
    subscribe(receiver.url("/all"), name="all", topics=["*"])
    subscribe(receiver.url("/paused"), name="paused", is_active=False)
    confirmed_order()

    # When the confirmation is handled
    outbox_handle(events_message().pk)

    # Then only the matching active subscription received it
    assert [request.path for request in receiver.received] == ["/all"]
    assert list(EventDelivery.objects.values_list("subscription__name", flat=True)) == ["all"]


def test_handling_the_same_message_twice_delivers_once(receiver):
    # Given a subscription and a handled confirmation
    subscribe(receiver.url("/crm"), name="crm")
    confirmed_order()
    message = events_message()
    outbox_handle(message.pk)

    # When the message is handled again (a worker died before marking it done)
    OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxMessage.Status.DISPATCHED)
    outbox_handle(message.pk)

    # Then the subscriber received it once
    assert len(receiver.received) == 1
    delivery = EventDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)


def test_failing_receiver_makes_the_handler_raise_and_the_retry_delivers_once(receiver):
    # Given two subscribers, one of which answers 500 once
    flaky = subscribe(receiver.url("/flaky"), name="flaky")
    steady = subscribe(receiver.url("/steady"), name="steady")
    receiver.fail_next["/flaky"] = 1
    confirmed_order()
    message = events_message()

    # When the message is handled: the flaky one fails, the steady one gets it
    with pytest.raises(EventDeliveriesIncomplete, match="flaky"):
        outbox_handle(message.pk)
    failed = EventDelivery.objects.get(subscription=flaky)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert "500" in failed.last_error
    assert EventDelivery.objects.get(subscription=steady).status == "delivered"
    message.refresh_from_db()
    assert message.status != OutboxMessage.Status.DONE

    # And the outbox retries it
    assert outbox_handle(message.pk) is True

    # Then the flaky one has it, with the same key, and the steady one was not re-sent
    first, second = receiver.on("/flaky")
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert len(receiver.on("/steady")) == 1
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.last_error) == ("delivered", 2, "")


def test_unreachable_receiver_raises_with_the_error_recorded():
    # Given a subscription to a port nothing listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subscribe(f"http://127.0.0.1:{port}/events", name="gone")
    confirmed_order()

    # When the message is handled
    with pytest.raises(EventDeliveriesIncomplete, match="gone"):
        outbox_handle(events_message().pk)

    # Then the attempt is recorded with its error
    delivery = EventDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "ConnectionError" in delivery.last_error


def test_without_subscribers_a_status_change_writes_no_event_work(receiver):
    # Given no subscription, then one to order.confirmed only
    nobody = confirmed_order()
    subscribe(receiver.url("/crm"), name="crm", topics=["order.confirmed"])

    # When further orders are placed and confirmed
    watched = confirmed_order()

    # Then only the watched topic, after the subscription, costs an outbox message
    events = OutboxMessage.objects.filter(handler=HANDLER)
    assert not events.filter(payload__order_id=str(nobody.pk)).exists()
    assert list(events.values_list("topic", flat=True)) == ["order.confirmed"]
    assert events.get().payload["order_id"] == str(watched.pk)
