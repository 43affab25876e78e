from celery import shared_task

from events.services import deliveries_due, order_deliveries_send, order_events_purge


@shared_task(name="oms.events.purge_order_events", acks_late=True, ignore_result=True)
def order_events_purge_task() -> int:
    """Delete order events past ORDER_EVENT_RETENTION_DAYS (the audit trail stays)."""
    return order_events_purge()


@shared_task(
    name="oms.events.deliver_order_events",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=300,
    time_limit=330,
)
def order_deliveries_send_task(subscription_id: int, order_id: str) -> int:
    """Post a subscription's due deliveries of one order, in sequence. A failed attempt
    is rescheduled on the delivery itself, so the task does not retry."""
    return order_deliveries_send(subscription_id=subscription_id, order_id=order_id)


@shared_task(name="oms.events.deliver_due", acks_late=True, ignore_result=True)
def deliveries_due_task() -> int:
    """Hand each (subscription, order) with a delivery due to the events queue."""
    due = deliveries_due()
    for subscription_id, order_id in due:
        order_deliveries_send_task.apply_async(
            args=[subscription_id, str(order_id)], queue="events"
        )
    return len(due)
