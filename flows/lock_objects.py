"""Lock the rows an order use case changes, always in the same order.

Order first, then payment, then payment operation (and shipment or fulfilment request):
every path that locks more than one of them goes through these helpers, so two paths
can never wait on each other in opposite orders. Call inside a transaction.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import NotFound
from fulfilment.models import Shipment
from orders.models import Order
from payments.models import Payment, PaymentOperation


def order_lock(*, order_id: uuid.UUID | str) -> Order:
    """Lock the order row for the rest of the caller's transaction."""
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if order is None:
        raise NotFound("No such order.")
    return order


@dataclass(frozen=True)
class LockedPayment:
    order: Order
    payment: Payment


@dataclass(frozen=True)
class LockedOperation:
    order: Order
    payment: Payment
    operation: PaymentOperation


def payment_lock(*, payment_id: int) -> LockedPayment:
    """Lock the payment's order, then the payment."""
    order_id = Payment.objects.values_list("order_id", flat=True).get(pk=payment_id)
    order = order_lock(order_id=order_id)
    return LockedPayment(
        order=order, payment=Payment.objects.select_for_update().get(pk=payment_id)
    )


def operation_lock(
    *, operation_id: int, payment_id: int | None = None, order_id: uuid.UUID | str | None = None
) -> LockedOperation:
    """Lock the operation's order, then its payment, then the operation. A caller that
    knows the operation's payment and that payment's order (they never change) passes
    them: three statements instead of five."""
    if payment_id is None:
        payment_id = PaymentOperation.objects.values_list("payment_id", flat=True).get(
            pk=operation_id
        )
    if order_id is None:
        locked = payment_lock(payment_id=payment_id)
        order, payment = locked.order, locked.payment
    else:
        order = order_lock(order_id=order_id)
        payment = Payment.objects.select_for_update().get(pk=payment_id, order_id=order_id)
    operation = PaymentOperation.objects.select_for_update().get(
        pk=operation_id, payment_id=payment_id
    )
    return LockedOperation(order=order, payment=payment, operation=operation)


def order_payment_lock(*, order: Order, statuses: Sequence[str]) -> Payment | None:
    """Lock the locked order's payment in one of `statuses` (at most one live payment is
    the order's: an edit's re-authorization not yet adopted, or the authorization it
    replaced, is not)."""
    return (
        Payment.objects.select_for_update()
        .filter(order=order, status__in=statuses, is_current=True)
        .first()
    )


def order_operation_lock(
    *, order: Order, kind: str, operation_id: int | None = None, exclude_status: str = ""
) -> PaymentOperation | None:
    """Lock one of the locked order's payment operations of `kind` (the given one, or
    the first not in `exclude_status`). Lock its payment first."""
    operations = PaymentOperation.objects.select_for_update().select_related("payment")
    operations = operations.filter(payment__order=order, kind=kind)
    if operation_id is not None:
        operations = operations.filter(pk=operation_id)
    if exclude_status:
        operations = operations.exclude(status=exclude_status)
    return operations.order_by("pk").first()


def shipment_lock(*, shipment_id: int) -> tuple[Order, Shipment]:
    """Lock the shipment's order, then the shipment."""
    order_id = Shipment.objects.values_list("order_id", flat=True).get(pk=shipment_id)
    order = order_lock(order_id=order_id)
    return order, Shipment.objects.select_for_update().get(pk=shipment_id)
