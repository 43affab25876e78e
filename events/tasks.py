from celery import shared_task

from events.services import order_events_purge


@shared_task(name="oms.events.purge_order_events", acks_late=True, ignore_result=True)
def order_events_purge_task() -> int:
    """Delete order events past ORDER_EVENT_RETENTION_DAYS (the audit trail stays)."""
    return order_events_purge()
