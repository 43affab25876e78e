"""Outbox handlers: hand each event of the order log to the subscriptions that want it."""

from typing import Any

from core.outbox import outbox_handler
from events.selectors import topics_with_subscribers
from events.services import order_event_dispatch, status_change_event_dispatch
from orders.audit import ORDER_EVENT_TOPIC_PREFIX
from orders.states import EVENT_TYPES


def _subscribed(topic: str) -> bool:
    return topic.removeprefix(ORDER_EVENT_TOPIC_PREFIX) in topics_with_subscribers()


@outbox_handler(
    *(ORDER_EVENT_TOPIC_PREFIX + event_type for event_type in EVENT_TYPES),
    name="events.dispatch_order_event",
    queue="events",
    wanted=_subscribed,
)
def dispatch_order_event(payload: dict[str, Any]) -> None:
    # Failed attempts do not fail the message: the delivery rows carry their retries.
    order_event_dispatch(event_id=payload["event_id"])


# Messages written before deliveries were driven by the event log (no topic publishes
# to this handler any more; kept so that those still in the outbox are delivered).
@outbox_handler(name="events.deliver_order_event", queue="events")
def deliver_status_change_event(payload: dict[str, Any]) -> None:
    status_change_event_dispatch(status_change_id=payload["status_change_id"])
