"""Refund captured money, fully or in parts, never beyond what was captured. The only
module that takes `refund`.

Sequence: (1) lock order and payment, check what is refundable (captured minus
refunded minus refunds in flight), record the refund operation, commit; (2) call the
provider outside any transaction, with the operation's key; (3) lock again and record
the outcome: a refund that brings the total to what was captured moves the order to
refunded. The webhook's charge.refunded reaches the same recording function.
"""

import uuid
from collections.abc import Callable

from django.db import transaction

from core.actors import Actor
from core.outbox import outbox_publish
from flows.lock_objects import operation_lock, order_lock, order_operation_lock, order_payment_lock
from flows.metrics import refund_observed
from orders.audit import order_event_record
from orders.errors import InvalidTransition
from orders.models import Order
from orders.services import order_transition_locked
from orders.states import OrderStatus
from payments.errors import RefundExceedsCaptured
from payments.models import Payment, PaymentOperation
from payments.services.operations import (
    OPEN_OPERATION_STATUSES,
    operation_create,
    operation_failure_record,
    operation_settle,
    payment_event_data,
    payment_refund_record,
    refunds_in_flight_total,
    refunds_succeeded_total,
)
from payments.services.outcomes import OutcomeKind, operation_send

REFUNDABLE_STATUSES = (
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
    OrderStatus.PARTIALLY_RETURNED,
)
# Orders that never shipped: money captured on them is refunded without a transition.
UNSHIPPED_STATUSES = (OrderStatus.CANCELLED, OrderStatus.EXPIRED)


def refund_recorded_locked(
    *,
    order: Order,
    payment: Payment,
    amount_refunded_total: int,
    actor: Actor,
    full_refund_transition: bool = True,
) -> None:
    """Raise the payment's refunded amount to the provider's total; a fully refunded
    shipped order moves to refunded (unless `full_refund_transition` is off: a return's
    refund, after which flows.returns decides the order's status)."""
    refunded_before = payment.amount_refunded
    fully_refunded = payment_refund_record(payment, amount_refunded_total=amount_refunded_total)
    if payment.amount_refunded > refunded_before:
        # `amount`: this refund (the payment's own amount is in the order's events).
        change = {
            **payment_event_data(payment),
            "amount": payment.amount_refunded - refunded_before,
        }
        order_event_record(order=order, type="payment.refunded", change=change)
        # The customer's refund notice, with this refund's amount.
        outbox_publish(
            topic="payment.refunded",
            payload={"order_id": str(order.pk), **change},
            key=f"payment-{payment.pk}-refunded-{payment.amount_refunded}",
        )
        refunded, currency = payment.amount_refunded - refunded_before, payment.currency
        transaction.on_commit(lambda: refund_observed(currency=currency, amount=refunded))
    if full_refund_transition and fully_refunded and order.status in REFUNDABLE_STATUSES:
        order_transition_locked(
            order=order, transition="refund", actor=actor, reason="fully refunded"
        )


def _refund_prepare(
    *,
    order_id: uuid.UUID | str,
    amount: int | None,
    resume_operation_id: int | None,
    on_prepared: Callable[[PaymentOperation], None] | None,
    refundable_statuses: tuple[str, ...],
) -> tuple[Payment, PaymentOperation]:
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        if resume_operation_id is not None:
            operation = order_operation_lock(
                order=order, kind=PaymentOperation.Kind.REFUND, operation_id=resume_operation_id
            )
            # A refund that definitely failed (never sent: breaker open) is made anew.
            if operation is not None and operation.status != PaymentOperation.Status.FAILED:
                return operation.payment, operation
        if order.status not in refundable_statuses:
            raise InvalidTransition(transition="refund", current_status=order.status)
        payment = order_payment_lock(order=order, statuses=[Payment.Status.CAPTURED])
        if payment is None:
            raise RefundExceedsCaptured("Nothing was captured for this order.", captured=0)
        refundable = (
            payment.amount_captured - payment.amount_refunded - refunds_in_flight_total(payment)
        )
        requested = refundable if amount is None else amount
        if requested <= 0 or requested > refundable:
            raise RefundExceedsCaptured(
                f"Requested {requested}, but only {max(refundable, 0)} of the captured "
                f"{payment.amount_captured} can still be refunded.",
                captured=payment.amount_captured,
                refunded=payment.amount_refunded,
                refundable=max(refundable, 0),
            )
        operation = operation_create(payment, PaymentOperation.Kind.REFUND, requested)
        if on_prepared is not None:
            on_prepared(operation)
        return payment, operation


def order_refund(
    *,
    order_id: uuid.UUID | str,
    amount: int | None,
    actor: Actor,
    resume_operation_id: int | None = None,
    on_prepared: Callable[[PaymentOperation], None] | None = None,
    refundable_statuses: tuple[str, ...] = REFUNDABLE_STATUSES,
    full_refund_transition: bool = True,
) -> Order:
    """Refund `amount` (all that is left when None). A full refund moves the order to
    refunded (unless `full_refund_transition` is off); partial refunds keep its status
    and add to the payment's refunded amount.

    `resume_operation_id` re-sends an earlier refund operation (same key) instead of
    making a new one; `on_prepared` runs inside the transaction that records it.
    """
    payment, operation = _refund_prepare(
        order_id=order_id,
        amount=amount,
        resume_operation_id=resume_operation_id,
        on_prepared=on_prepared,
        refundable_statuses=refundable_statuses,
    )
    outcome = None
    if operation.status in OPEN_OPERATION_STATUSES:
        intent_id = payment.provider_payment_id or ""
        outcome = operation_send(
            operation,
            lambda gateway: gateway.refund(
                intent_id=intent_id,
                amount=operation.amount,
                idempotency_key=operation.idempotency_key,
            ),
        )
    with transaction.atomic():
        locked = operation_lock(operation_id=operation.pk)
        if outcome is None or locked.operation.status == PaymentOperation.Status.SUCCEEDED:
            return locked.order
        if outcome.kind is OutcomeKind.SUCCEEDED and outcome.result is not None:
            operation_settle(
                locked.operation,
                PaymentOperation.Status.SUCCEEDED,
                provider_object_id=outcome.result.id,
            )
            refund_recorded_locked(
                order=locked.order,
                payment=locked.payment,
                amount_refunded_total=refunds_succeeded_total(locked.payment),
                actor=actor,
                full_refund_transition=full_refund_transition,
            )
            return locked.order
        failure = operation_failure_record(locked.operation, outcome, action="refund")
    raise failure


def order_refund_unshipped_capture(*, order_id: uuid.UUID | str, actor: Actor) -> Order:
    """Refund money captured on an order that did not ship (cancelled or expired): all
    of it, exactly once, without changing the order's status."""
    return order_refund(
        order_id=order_id, amount=None, actor=actor, refundable_statuses=UNSHIPPED_STATUSES
    )


def order_refund_in_full(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Staff: refund all that is left of the capture; an order paid outside oms (nothing
    captured here) just records the refund."""
    if Payment.objects.filter(order_id=order_id, status=Payment.Status.CAPTURED).exists():
        return order_refund(order_id=order_id, amount=None, actor=actor)
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        order_transition_locked(order=order, transition="refund", actor=actor, reason=reason)
    return order
