"""Payment use cases. Provider calls happen outside database transactions, each one
recorded first as a PaymentOperation whose id gives its idempotency key."""

from payments.services.authorization import payment_authorize
from payments.services.capture import order_ship
from payments.services.orders import (
    order_cancel_and_void,
    order_transition_with_payments,
    orders_expire_and_void,
)
from payments.services.reconcile import ReconcileReport, payments_reconcile
from payments.services.refunds import order_refund
from payments.services.voids import payment_void, payments_void_for_order

__all__ = [
    "ReconcileReport",
    "order_cancel_and_void",
    "order_refund",
    "order_ship",
    "order_transition_with_payments",
    "orders_expire_and_void",
    "payment_authorize",
    "payment_void",
    "payments_reconcile",
    "payments_void_for_order",
]
