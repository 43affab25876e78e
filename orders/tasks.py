from celery import shared_task

from orders.services import orders_expire_overdue


@shared_task(name="oms.orders.expire_overdue", acks_late=True, ignore_result=True)
def orders_expire_overdue_task() -> int:
    """Expire unpaid orders past their hold; their voids follow through the outbox."""
    return orders_expire_overdue()
