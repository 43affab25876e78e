"""Scheduled order work. Tasks are thin: they call one use case."""

from celery import shared_task

from flows.expire import orders_expire_overdue
from flows.reconcile import payments_reconcile


@shared_task(name="oms.orders.expire_overdue", acks_late=True, ignore_result=True)
def orders_expire_overdue_task() -> int:
    """Expire unpaid orders past their hold; their voids follow through the outbox."""
    return orders_expire_overdue()


@shared_task(name="oms.payments.reconcile", acks_late=True, ignore_result=True)
def payments_reconcile_task() -> int:
    report = payments_reconcile()
    return report.resolved
