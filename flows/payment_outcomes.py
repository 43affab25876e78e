"""Apply a payment outcome to the order: confirm it, or fail its payment attempt.

Every path that learns how a payment went (the checkout's or pay's own provider call,
the Stripe webhook, the reconciler) ends here, inside its transaction with the order
and payment locked (flows.lock_objects). This module is the only one that takes the
order's `confirm`, `await_stock` and `fail_payment` transitions.
"""

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from core.actors import Actor
from core.outbox import outbox_dispatch_on_commit
from flows.lock_objects import LockedOperation, order_lock
from flows.outcome_sql import OUTCOME_AUTHORIZED_WRITE_SQL
from flows.ship import order_capture_recorded_locked
from inventory.selectors import order_backordered_units
from orders.audit import (
    order_event_messages,
    order_event_record,
    order_event_row,
    order_status_change_rows,
)
from orders.models import Order, OrderEdit
from orders.services import order_transition_locked, order_transition_planned
from orders.states import STATUSES_USING_PAYMENT, OrderStatus
from payments.gateways.base import IntentResult
from payments.models import Payment, PaymentOperation
from payments.services.intents import (
    IntentChange,
    intent_apply_to_payment,
    intent_authorized_planned,
)
from payments.services.operations import payment_event_data, payment_fail

logger = logging.getLogger(__name__)


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


class OutcomeWriteFailed(Exception):
    """The statement of `order_confirm_authorized_written` failed: its transaction is to
    be rolled back and the outcome recorded as `payment_intent_apply_locked` does."""


@dataclass(frozen=True)
class ConfirmWritten:
    """An authorized payment and its confirmed order, as one statement wrote them."""

    key_completed: bool
    body: dict[str, Any] | None


def order_confirm_authorized_written(
    *,
    locked: LockedOperation,
    intent: IntentResult,
    actor: Actor,
    respond: Callable[[Order, Payment], tuple[dict[str, Any], dict[str, Any]]] | None = None,
) -> ConfirmWritten | None:
    """`payment_intent_apply_locked` for the common case, in one statement: an order
    pending payment with no backordered units (a paid checkout written in one
    statement has none), its current pending payment and the payment's open authorize
    operation (all locked), and an authorized intent. The operation is settled, the
    payment authorized and the order confirmed through their state machines in memory,
    then written by id with the audit row, the `payment.authorized` and
    `order.confirmed` events and their outbox messages (flows.outcome_sql), with the
    values those records would get. The locked instances are left as written.

    `respond(order, payment)`: the response body and the claimed Idempotency-Key's
    completion with it (core.idempotency `StatementClaim.completion`), written in the
    same statement when the claim is still held. Return None, having changed nothing,
    for any other case (the caller records it the general way); raise
    OutcomeWriteFailed when the statement failed (the transaction must roll back).
    """
    order, payment, operation = locked.order, locked.payment, locked.operation
    if order.status != OrderStatus.PENDING_PAYMENT or not payment.is_current:
        return None
    now = timezone.now()
    authorized = intent_authorized_planned(payment, operation, intent, now=now)
    if authorized is None:
        return None
    # As the general path: the payment's event carries the order before its change.
    payment_event = order_event_row(
        order=order, type="payment.authorized", change=payment_event_data(payment)
    )
    planned = order_transition_planned(order=order, transition="confirm", now=now)
    change = order_status_change_rows(
        order=order,
        from_status=planned.from_status,
        transition=planned.transition,
        actor=actor,
        reason="payment authorized",
    )
    body, key = None, None
    if respond is not None:
        try:
            body, key = respond(order, payment)
        except Exception as error:
            # A response that cannot be made here must not cost the outcome: the key
            # completes (or fails) after the commit, as for any other outcome.
            logger.warning("Order %s: response not completed with the outcome: %s", order.pk, error)
            body, key = None, None
    document = {
        "now": now.isoformat(),
        "operation": {
            "id": operation.pk,
            "from_status": authorized.operation_from_status,
            "status": operation.status,
            "provider_object_id": operation.provider_object_id,
        },
        "payment": {
            "id": payment.pk,
            "from_status": authorized.payment_from_status,
            "status": payment.status,
            "provider_payment_id": payment.provider_payment_id,
        },
        "order": {"id": str(order.pk), "from_status": planned.from_status, "status": order.status},
        "change": change["change"],
        "events": [payment_event, change["event"]],
        "outbox": [
            *order_event_messages(event=payment_event, order_id=order.pk),
            *change["outbox"],
        ],
        "key": key,
    }
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                OUTCOME_AUTHORIZED_WRITE_SQL, [json.dumps(document, cls=DjangoJSONEncoder)]
            )
            row = cursor.fetchone()
    except DatabaseError as error:
        raise OutcomeWriteFailed(str(error)) from error
    assert row is not None  # noqa: S101 - a SELECT of aggregates returns one row
    operations, payments, orders, keys, outbox_ids, _ = row
    if (operations, payments, orders) != (1, 1, 1):
        # The rows are locked, so only a bug gets here: roll the statement back.
        raise OutcomeWriteFailed(f"rows written: {operations}, {payments}, {orders}")
    outbox_dispatch_on_commit(list(outbox_ids or []))
    return ConfirmWritten(key_completed=keys == 1, body=body)


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
