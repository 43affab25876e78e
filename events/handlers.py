"""Outbox handlers: tell subscribed internal services what happened to an order."""

from typing import Any

from core.outbox import outbox_handler
from events.models import ORDER_TOPICS
from events.services import order_event_deliver


@outbox_handler(*ORDER_TOPICS, name="events.deliver_order_event", queue="events")
def deliver_order_event(payload: dict[str, Any]) -> None:
    order_event_deliver(topic=f"order.{payload['to_status']}", payload=payload)
