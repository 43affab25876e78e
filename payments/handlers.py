"""Outbox handlers: money work that follows an order's state change."""

from typing import Any

from core.actors import Actor
from core.outbox import outbox_handler
from payments.models import Payment, PaymentOperation
from payments.services import payments_void_for_order
from payments.services.voids import ORDER_STATUSES_USING_PAYMENT, VOIDABLE_STATUSES


class VoidPending(Exception):
    """The provider did not confirm the void yet: retry later."""


@outbox_handler(
    "order.cancelled", "order.expired", name="payments.void_for_order", queue="payments"
)
def void_for_order(payload: dict[str, Any]) -> None:
    order_id = payload["order_id"]
    payments_void_for_order(order_id=order_id, actor=Actor.system())
    open_voids = PaymentOperation.objects.filter(
        payment__order_id=order_id,
        payment__status__in=VOIDABLE_STATUSES,
        kind=PaymentOperation.Kind.VOID,
    ).exclude(status=PaymentOperation.Status.FAILED)
    if (
        open_voids.exists()
        or Payment.objects.filter(order_id=order_id, status=Payment.Status.AUTHORIZED)
        .exclude(order__status__in=ORDER_STATUSES_USING_PAYMENT)
        .exists()
    ):
        raise VoidPending(f"Authorization of order {order_id} not voided yet")
