"""A real receiving HTTP server on loopback, and the orders and subscriptions the
webhook tests deliver."""

import uuid
from collections.abc import Iterator
from datetime import timedelta
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
from tests.support.webhook_receiver import Received, Receiver, receiver

__all__ = ["Received", "Receiver", "receiver"]

HANDLER = "events.dispatch_order_event"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Analytical Way",
    "line2": "",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}


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
