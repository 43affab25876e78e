"""Pay for an order: authorize its total (manual capture) and confirm it. The only
module that takes `retry_payment`.

Sequence: (1) lock the order and its live payment; pick or create the payment and its
authorize operation (an operation whose outcome is unknown is sent again with the same
key, so at most one authorization exists for it), commit; (2) call the provider
outside any transaction; (3) lock order, payment and operation again and record the
outcome through flows.payment_outcomes; (4) void a stray authorization, if any.

A paid checkout written in one statement (flows.place.order_checkout_written) has
written step (1) with its order: `order_pay_checkpointed` starts at (2).
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from core.actors import Actor
from core.idempotency import StatementClaim
from flows.lock_objects import LockedOperation, operation_lock, order_lock, order_payment_lock
from flows.payment_outcomes import (
    OutcomeWriteFailed,
    order_confirm_authorized_written,
    order_confirm_locked,
    order_payment_failed_locked,
    payment_declined_locked,
    payment_intent_apply_locked,
)
from flows.void import payment_void
from orders.errors import InvalidTransition
from orders.models import Order
from orders.services import order_transition_locked
from orders.states import OrderStatus
from payments.errors import (
    OperationInProgress,
    PaymentDeclined,
    PaymentProviderUnavailable,
    PaymentRejected,
)
from payments.gateways.base import IntentResult
from payments.models import Payment, PaymentOperation
from payments.provider import retry_after_seconds
from payments.services.operations import (
    LIVE_PAYMENT_STATUSES,
    operation_mark_unknown,
    operation_open_locked,
    operation_resend,
    operation_settle,
    payment_create,
    payment_fail,
)
from payments.services.outcomes import Outcome, OutcomeKind, operation_send

logger = logging.getLogger(__name__)


def _payment_retry_locked(order: Order, actor: Actor) -> None:
    if order.status == OrderStatus.PAYMENT_FAILED:
        order_transition_locked(
            order=order, transition="retry_payment", actor=actor, reason="payment retry"
        )


def _authorize_prepare(
    *, order_id: uuid.UUID | str, payment_method: str, actor: Actor
) -> tuple[Payment, PaymentOperation | None]:
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        payment = order_payment_lock(order=order, statuses=LIVE_PAYMENT_STATUSES)
        if payment is not None and payment.status == Payment.Status.AUTHORIZED:
            # Authorized already (e.g. found by the reconciler after an outage): use it,
            # unless it is being voided.
            if operation_open_locked(payment, PaymentOperation.Kind.VOID) is not None:
                raise OperationInProgress("The previous authorization is being released.")
            _payment_retry_locked(order, actor)
            if order.status == OrderStatus.PENDING_PAYMENT:
                order_confirm_locked(order=order, actor=actor, reason="payment authorized")
            return payment, None
        if payment is not None and payment.status != Payment.Status.PENDING:
            # Captured, or waiting for 3-D Secure: nothing to send.
            return payment, None
        if order.status == OrderStatus.PAYMENT_FAILED:
            _payment_retry_locked(order, actor)
        elif order.status != OrderStatus.PENDING_PAYMENT:
            raise InvalidTransition(transition="pay", current_status=order.status)
        if payment is not None:
            operation = operation_open_locked(payment, PaymentOperation.Kind.AUTHORIZE)
            if operation is not None and operation.status == PaymentOperation.Status.PENDING:
                # In flight: sending it again would get the provider's 409 and fail the
                # order under the request that is about to authorize it.
                raise OperationInProgress("The payment for this order is being authorized.")
            if operation is not None:
                operation_resend(operation)  # unknown outcome: same key again
                return payment, operation
            payment_fail(payment, decline_code="")
        created, operation = payment_create(
            order_id=order.pk,
            payment_method=payment_method,
            amount=order.total_amount,
            currency=order.currency,
        )
        created.order = order  # the provider call's metadata reads it
        return created, operation


@dataclass(frozen=True)
class _Recorded:
    """The outcome recorded: the rows as its transaction left them, and whether a stray
    authorization must be voided (outside it)."""

    locked: LockedOperation
    needs_void: bool
    body: dict[str, Any] | None = None  # the response, rendered with the outcome


@dataclass(frozen=True)
class CheckoutResponse:
    """A paid checkout's claimed Idempotency-Key and how to render its response from
    the order and payment as recorded: the key completes with the outcome, in its
    transaction, where that outcome is written in one statement."""

    claim: StatementClaim
    render: Callable[[Order, Payment], dict[str, Any]]

    def respond(self, order: Order, payment: Payment) -> tuple[dict[str, Any], dict[str, Any]]:
        body = self.render(order, payment)
        return body, self.claim.completion(body=body)


def _authorize_record(
    *,
    order_id: uuid.UUID | str,
    payment_id: int,
    operation_id: int,
    outcome: Outcome[IntentResult],
    actor: Actor,
    written: CheckoutResponse | None = None,
) -> _Recorded:
    """Record the outcome, with the order, payment and operation locked.

    `written` (a paid checkout written in one statement, whose order has no backordered
    units): an authorization is written in one statement with the key's completion
    (flows.payment_outcomes `order_confirm_authorized_written`). Should that statement
    fail, its transaction rolls back and the outcome is recorded the general way in a
    new one (the key then completes after it, as for any other outcome): a key that
    cannot complete never costs the recorded authorization."""
    if written is not None and outcome.kind is OutcomeKind.SUCCEEDED and outcome.result:
        try:
            with transaction.atomic():
                locked = operation_lock(
                    operation_id=operation_id, payment_id=payment_id, order_id=order_id
                )
                confirmed = None
                if locked.operation.status == PaymentOperation.Status.PENDING:
                    confirmed = order_confirm_authorized_written(
                        locked=locked, intent=outcome.result, actor=actor, respond=written.respond
                    )
                if confirmed is None:
                    needs_void = _authorize_record_locked(locked, outcome=outcome, actor=actor)
        except OutcomeWriteFailed as error:
            logger.warning(
                "Payment operation %s: outcome statement failed: %s", operation_id, error
            )
        else:
            if confirmed is None:
                return _Recorded(locked, needs_void)
            if confirmed.key_completed:
                written.claim.stored()  # committed with the outcome
            return _Recorded(locked, False, confirmed.body)
    with transaction.atomic():
        locked = operation_lock(operation_id=operation_id, payment_id=payment_id, order_id=order_id)
        return _Recorded(locked, _authorize_record_locked(locked, outcome=outcome, actor=actor))


def _authorize_record_locked(
    locked: LockedOperation, *, outcome: Outcome[IntentResult], actor: Actor
) -> bool:
    """Record the outcome on the locked rows; return True when a stray authorization
    must be voided."""
    order, payment, operation = locked.order, locked.payment, locked.operation
    if operation.status not in (PaymentOperation.Status.PENDING, PaymentOperation.Status.UNKNOWN):
        return False  # a webhook or the reconciler recorded it first
    if outcome.kind is OutcomeKind.SUCCEEDED and outcome.result is not None:
        return payment_intent_apply_locked(
            order=order,
            payment=payment,
            intent=outcome.result,
            actor=actor,
            authorize_operation=operation,
        )
    declined = outcome.kind in (OutcomeKind.DECLINED, OutcomeKind.REJECTED)
    never_sent = outcome.kind is OutcomeKind.NOT_SENT and operation.attempts <= 1
    if declined or never_sent:
        # Definite: nothing was authorized for this attempt.
        operation_settle(
            operation,
            PaymentOperation.Status.FAILED,
            error_code=outcome.error_code,
            message=outcome.message,
        )
        payment_declined_locked(
            order=order,
            payment=payment,
            decline_code=outcome.error_code if declined else "",
            actor=actor,
            reason=f"payment declined: {outcome.error_code}"
            if declined
            else "payment provider unavailable",
        )
    else:
        # It may have reached the provider: it stays unknown, for a retry with the
        # same key or the reconciler; the order's attempt failed for now.
        operation_mark_unknown(operation, outcome)
        order_payment_failed_locked(order=order, actor=actor, reason="payment provider unavailable")
    return False


def _authorize_send(
    *,
    operation: PaymentOperation,
    payment: Payment,
    order_number: str,
    counted: bool = False,
) -> Outcome[IntentResult]:
    """Call the provider for the authorize operation (outside any transaction)."""
    return operation_send(
        operation,
        lambda gateway: gateway.authorize(
            amount=payment.amount,
            currency=payment.currency.lower(),
            payment_method=payment.payment_method,
            idempotency_key=operation.idempotency_key,
            metadata={
                "order_id": str(payment.order_id),
                "order_number": order_number,
                "payment_id": str(payment.pk),
            },
        ),
        counted=counted,
    )


def _authorize_finish(
    recorded: _Recorded, *, outcome: Outcome[IntentResult], order_number: str, actor: Actor
) -> Payment:
    """Void a stray authorization; return the payment as recorded, or raise the error
    its outcome means for the client."""
    payment = recorded.locked.payment
    if recorded.needs_void:
        payment_void(payment_id=payment.pk, actor=actor)
        payment = Payment.objects.get(pk=payment.pk)
    if payment.status in (
        Payment.Status.AUTHORIZED,
        Payment.Status.REQUIRES_ACTION,
        Payment.Status.CAPTURED,
    ):
        return payment
    order_id = str(payment.order_id)
    if payment.status == Payment.Status.FAILED:
        if outcome.kind is OutcomeKind.REJECTED:
            raise PaymentRejected(outcome.message, order_id=order_id)
        if outcome.kind is OutcomeKind.NOT_SENT:
            raise PaymentProviderUnavailable(retry_after=retry_after_seconds(), order_id=order_id)
        raise PaymentDeclined(
            decline_code=payment.decline_code or outcome.error_code,
            message=outcome.message,
            order_id=order_id,
            order_number=order_number,
        )
    raise PaymentProviderUnavailable(retry_after=retry_after_seconds(), order_id=order_id)


def order_pay(*, order_id: uuid.UUID | str, payment_method: str, actor: Actor) -> Payment:
    """Authorize the order's total (manual capture). Confirm the order when authorized.

    Raise PaymentDeclined (order payment_failed, stock still held until expiry),
    PaymentProviderUnavailable (order payment_failed, the attempt left to a retry or
    the reconciler) or PaymentRejected. A payment waiting for 3-D Secure is returned
    with status requires_action; the webhook finishes it.
    """
    payment, operation = _authorize_prepare(
        order_id=order_id, payment_method=payment_method, actor=actor
    )
    if operation is None:
        return payment
    order_number = payment.order.number
    outcome = _authorize_send(operation=operation, payment=payment, order_number=order_number)
    recorded = _authorize_record(
        order_id=payment.order_id,
        payment_id=payment.pk,
        operation_id=operation.pk,
        outcome=outcome,
        actor=actor,
    )
    return _authorize_finish(recorded, outcome=outcome, order_number=order_number, actor=actor)


@dataclass(frozen=True)
class CheckpointedPayment:
    """A paid checkout's payment and authorize operation, as its statement wrote them
    with the order (pending, the attempt counted)."""

    order_id: uuid.UUID
    order_number: str
    payment_id: int
    operation_id: int
    payment_method: str
    amount: int
    currency: str


def order_pay_checkpointed(
    *, checkpoint: CheckpointedPayment, actor: Actor, response: CheckoutResponse | None = None
) -> tuple[Order, Payment, dict[str, Any] | None]:
    """Steps (2)-(4) of `order_pay` for a payment whose authorize operation committed
    with its order: call the provider (same deterministic key), record the outcome.
    Return the order and the payment as recorded (nothing is read back), and the
    response `response` rendered when the outcome was written with the key's
    completion (None otherwise); raise as `order_pay` does."""
    payment = Payment(
        pk=checkpoint.payment_id,
        order_id=checkpoint.order_id,
        payment_method=checkpoint.payment_method,
        amount=checkpoint.amount,
        currency=checkpoint.currency,
    )
    operation = PaymentOperation(
        pk=checkpoint.operation_id,
        payment_id=checkpoint.payment_id,
        kind=PaymentOperation.Kind.AUTHORIZE,
        amount=checkpoint.amount,
        attempts=1,
    )
    outcome = _authorize_send(
        operation=operation, payment=payment, order_number=checkpoint.order_number, counted=True
    )
    recorded = _authorize_record(
        order_id=checkpoint.order_id,
        payment_id=checkpoint.payment_id,
        operation_id=checkpoint.operation_id,
        outcome=outcome,
        actor=actor,
        written=response,
    )
    paid = _authorize_finish(
        recorded, outcome=outcome, order_number=checkpoint.order_number, actor=actor
    )
    order = recorded.locked.order
    if recorded.needs_void:
        order = Order.objects.get(pk=checkpoint.order_id)  # the void changed it
    return order, paid, recorded.body


def order_payment_retry(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Staff: let the customer try to pay again while the stock is still held."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        order_transition_locked(order=order, transition="retry_payment", actor=actor, reason=reason)
    return order
