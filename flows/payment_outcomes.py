"""Apply a payment outcome to the order: confirm it, or fail its payment attempt.

Every path that learns how a payment went (the checkout's or pay's own provider call,
the Stripe webhook, the reconciler) ends here, inside its transaction with the order
and payment locked (flows.lock_objects). This module is the only one that takes the
order's `confirm`, `await_stock` and `fail_payment` transitions.
"""

import uuid
from collections.abc import Callable

from django.db import transaction

from core.actors import Actor
from flows.lock_objects import order_lock
from flows.ship import order_capture_recorded_locked
from inventory.selectors import order_backordered_units
from orders.audit import order_event_record
from orders.models import Order, OrderEdit
from orders.services import order_transition_locked
from orders.states import STATUSES_USING_PAYMENT, OrderStatus
from payments.gateways.base import IntentResult
from payments.models import Payment, PaymentOperation
from payments.services.intents import IntentChange, intent_apply_to_payment
from payments.services.operations import payment_event_data, payment_fail


def order_confirm_locked(*, order: Order, actor: Actor, reason: str) -> None:
    """The payment is authorized: the order is confirmed (and routed by the outbox), or,
    while some of its units are backordered, awaits stock (flows.backorders moves it on
    once receipts cover them)."""
    if order.status == OrderStatus.PENDING_PAYMENT and order_backordered_units(order_id=order.pk):
        order_transition_locked(order=order, transition="await_stock", actor=actor, reason=reason)
        return
    order_transition_locked(order=order, transition="confirm", actor=actor, reason=reason)


def order_payment_failed_locked(*, order: Order, actor: Actor, reason: str) -> None:
    """The order's payment attempt failed; its stock stays held until it expires."""
    if order.status == OrderStatus.PENDING_PAYMENT:
        order_transition_locked(order=order, transition="fail_payment", actor=actor, reason=reason)


def payment_declined_locked(
    *, order: Order, payment: Payment, decline_code: str, actor: Actor, reason: str
) -> None:
    """The payment definitely did not authorize: fail it, and the order's attempt."""
    payment_fail(payment, decline_code=decline_code)
    order_payment_failed_locked(order=order, actor=actor, reason=reason)


def _authorized(order: Order, intent: IntentResult, actor: Actor) -> bool:
    if order.status == OrderStatus.PENDING_PAYMENT:
        order_confirm_locked(order=order, actor=actor, reason="payment authorized")
        return False
    # The order moved on without it (cancelled, expired, another attempt): release it.
    return order.status not in STATUSES_USING_PAYMENT


def _late_authorization(order: Order, intent: IntentResult, actor: Actor) -> bool:
    return True


def _failed(order: Order, intent: IntentResult, actor: Actor) -> bool:
    reason = f"payment failed: {intent.decline_code or 'requires_payment_method'}"
    order_payment_failed_locked(order=order, actor=actor, reason=reason)
    return False


def _canceled_before_authorization(order: Order, intent: IntentResult, actor: Actor) -> bool:
    order_payment_failed_locked(order=order, actor=actor, reason="payment canceled at the provider")
    return False


def _captured(order: Order, intent: IntentResult, actor: Actor) -> bool:
    order_capture_recorded_locked(order=order, actor=actor)
    return False


def _nothing(order: Order, intent: IntentResult, actor: Actor) -> bool:
    return False


# What each change of a payment means for its order. Each returns True when the
# payment's authorization must be voided afterwards (outside the transaction).
_ORDER_EFFECTS: dict[IntentChange, Callable[[Order, IntentResult, Actor], bool]] = {
    IntentChange.AUTHORIZED: _authorized,
    IntentChange.LATE_AUTHORIZATION: _late_authorization,
    IntentChange.FAILED: _failed,
    IntentChange.CANCELED_BEFORE_AUTHORIZATION: _canceled_before_authorization,
    IntentChange.CAPTURED: _captured,
    IntentChange.REQUIRES_ACTION: _nothing,
    IntentChange.VOIDED: _nothing,
    IntentChange.NONE: _nothing,
}


# Payment changes that are events in the order's log (recorded before what they mean
# for the order: payment.authorized comes before order.confirmed).
_EVENT_BY_PAYMENT_CHANGE = {
    IntentChange.AUTHORIZED: "payment.authorized",
    IntentChange.CAPTURED: "payment.captured",
    IntentChange.VOIDED: "payment.voided",  # an authorization released, not an attempt
}


def payment_unused_locked(payment: Payment) -> bool:
    """Whether the locked payment is not the order's and no order edit may still make it
    so: the authorization an edit replaced, or an edit's re-authorization whose edit
    will not commit (failed, superseded). Such an authorization is voided."""
    if payment.is_current:
        return False
    if payment.order_edit_id is None:
        return True
    return not OrderEdit.objects.filter(
        pk=payment.order_edit_id, status=OrderEdit.Status.PROPOSED
    ).exists()


def payment_intent_apply_locked(
    *,
    order: Order,
    payment: Payment,
    intent: IntentResult,
    actor: Actor,
    authorize_operation: PaymentOperation | None = None,
) -> bool:
    """Apply a PaymentIntent's state to the payment and the order. Return True when the
    authorization must be voided (it exists but its order no longer wants it).
    `authorize_operation`: the payment's authorize operation, already locked."""
    status_before = payment.status
    change = intent_apply_to_payment(payment, intent, authorize_operation=authorize_operation)
    event_type = _EVENT_BY_PAYMENT_CHANGE.get(change)
    if payment.status != status_before and event_type is not None:
        order_event_record(order=order, type=event_type, change=payment_event_data(payment))
    needs_void = _ORDER_EFFECTS[change](order, intent, actor)
    if change is IntentChange.AUTHORIZED and payment_unused_locked(payment):
        return True
    return needs_void


def order_confirm(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Staff: confirm an order paid outside oms (no payment through the provider)."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        order_confirm_locked(order=order, actor=actor, reason=reason or "confirmed by staff")
    return order


def order_fail_payment(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Staff: record that the order's payment attempt failed."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        order_transition_locked(order=order, transition="fail_payment", actor=actor, reason=reason)
    return order
