from celery import shared_task

from payments.services import payments_reconcile


@shared_task(name="oms.payments.reconcile", acks_late=True, ignore_result=True)
def payments_reconcile_task() -> int:
    report = payments_reconcile()
    return report.resolved
