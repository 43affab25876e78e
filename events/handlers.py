"""Outbox handlers: tell subscribed internal services what happened to an order."""

from typing import Any

from core.outbox import outbox_handler
from events.models import ORDER_TOPICS
from events.selectors import topics_with_subscribers
from events.services import order_event_deliver


def _subscribed(topic: str) -> bool:
    return topic in topics_with_subscribers()


@outbox_handler(
    *ORDER_TOPICS, name="events.deliver_order_event", queue="events", wanted=_subscribed
)
def deliver_order_event(payload: dict[str, Any]) -> None:
    order_event_deliver(topic=f"order.{payload['to_status']}", payload=payload)
