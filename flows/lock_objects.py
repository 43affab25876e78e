"""Lock the rows an order use case changes, always in the same order.

Order first, then payment, then payment operation (and shipment or fulfilment request):
every path that locks more than one of them goes through these helpers, so two paths
can never wait on each other in opposite orders. Call inside a transaction.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection
from django.db.models import Model

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
    them: one statement instead of five (`_operation_lock_known`)."""
    if payment_id is not None and order_id is not None:
        return _operation_lock_known(
            operation_id=operation_id, payment_id=payment_id, order_id=order_id
        )
    payment_id = PaymentOperation.objects.values_list("payment_id", flat=True).get(pk=operation_id)
    locked = payment_lock(payment_id=payment_id)
    operation = PaymentOperation.objects.select_for_update().get(pk=operation_id)
    return LockedOperation(order=locked.order, payment=locked.payment, operation=operation)


_LOCKED_MODELS: tuple[type[Model], ...] = (Order, Payment, PaymentOperation)


def _columns(model: type[Model], alias: str) -> str:
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


# PostgreSQL locks a row of each table of FOR UPDATE, for each result row, in the
# order the tables appear in FROM: the order, then the payment, then the operation, as
# the helpers above do one statement at a time.
_OPERATION_LOCK_SQL = f"""
SELECT {_columns(Order, "o")}, {_columns(Payment, "p")}, {_columns(PaymentOperation, "op")}
FROM orders_order o, payments_payment p, payments_paymentoperation op
WHERE o.id = %s AND p.id = %s AND p.order_id = o.id AND op.id = %s AND op.payment_id = p.id
FOR UPDATE
"""  # noqa: S608 - the columns are the models' own


def _operation_lock_known(
    *, operation_id: int, payment_id: int, order_id: uuid.UUID | str
) -> LockedOperation:
    with connection.cursor() as cursor:
        cursor.execute(_OPERATION_LOCK_SQL, [order_id, payment_id, operation_id])
        row = cursor.fetchone()
    if row is None:
        raise NotFound("No such payment operation.")
    instances = []
    start = 0
    for model in _LOCKED_MODELS:
        fields = model._meta.concrete_fields
        values = [
            field.from_db_value(value, None, connection)
            if hasattr(field, "from_db_value")
            else value
            for field, value in zip(fields, row[start : start + len(fields)], strict=True)
        ]
        instances.append(model.from_db(connection.alias, [f.attname for f in fields], values))
        start += len(fields)
    order, payment, operation = instances
    assert isinstance(order, Order)  # noqa: S101 - for the type checker
    assert isinstance(payment, Payment)  # noqa: S101
    assert isinstance(operation, PaymentOperation)  # noqa: S101
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
