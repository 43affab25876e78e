"""Release authorizations an order no longer needs (cancelled, expired, or a stray
attempt that authorized late).

One path for every void: the outbox handler after an order is cancelled or expired,
the reconciler's sweep of stray authorizations and the staff action all call
`order_payments_void`; an authorization an order edit replaced (or took and did not
use) is voided by `payment_void_unused`, from the outbox message the edit wrote.
Sequence: (1) lock order and payment, record (or re-open) the void operation, commit;
(2) cancel the PaymentIntent outside any transaction; (3) lock again and record the
outcome through flows.payment_outcomes.
"""

import uuid

from django.db import IntegrityError, transaction

from core.actors import Actor
from flows.lock_objects import operation_lock, payment_lock
from flows.payment_outcomes import payment_intent_apply_locked, payment_unused_locked
from orders.states import STATUSES_USING_PAYMENT
from payments.models import Payment, PaymentOperation
from payments.services.operations import (
    VOIDABLE_STATUSES,
    operation_create,
    operation_mark_unknown,
    operation_open_locked,
    operation_settle,
)
from payments.services.outcomes import OutcomeKind, operation_send


def _void_prepare(*, payment_id: int) -> tuple[Payment, PaymentOperation] | None:
    with transaction.atomic():
        locked = payment_lock(payment_id=payment_id)
        order, payment = locked.order, locked.payment
        # A failed attempt authorized late (another attempt is the order's) holds money too.
        late = payment.status == Payment.Status.FAILED
        if (
            payment.status not in VOIDABLE_STATUSES and not late
        ) or not payment.provider_payment_id:
            return None
        # An authorization an order edit replaced, or one an edit took and will not use,
        # is released whatever the order's status.
        if (
            order.status in STATUSES_USING_PAYMENT
            and not late
            and not payment_unused_locked(payment)
        ):
            return None
        operation = operation_open_locked(payment, PaymentOperation.Kind.VOID)
        if operation is None:
            try:
                with transaction.atomic():
                    operation = operation_create(
                        payment, PaymentOperation.Kind.VOID, payment.amount
                    )
            except IntegrityError:
                return None  # a void already succeeded
        return payment, operation


def payment_void(*, payment_id: int, actor: Actor) -> bool:
    """Cancel the PaymentIntent. Return True when it is voided; an unknown outcome is
    left for the reconciler, which sends the same operation (same key) again."""
    prepared = _void_prepare(payment_id=payment_id)
    if prepared is None:
        return False
    payment, operation = prepared
    intent_id = payment.provider_payment_id or ""
    outcome = operation_send(
        operation,
        lambda gateway: gateway.cancel(
            intent_id=intent_id, idempotency_key=operation.idempotency_key
        ),
    )
    with transaction.atomic():
        locked = operation_lock(operation_id=operation.pk)
        if outcome.kind is OutcomeKind.SUCCEEDED and outcome.result is not None:
            payment_intent_apply_locked(
                order=locked.order, payment=locked.payment, intent=outcome.result, actor=actor
            )
            operation_settle(locked.operation, PaymentOperation.Status.SUCCEEDED)
            return locked.payment.status == Payment.Status.VOIDED
        if outcome.kind in (OutcomeKind.DECLINED, OutcomeKind.REJECTED):
            operation_settle(
                locked.operation,
                PaymentOperation.Status.FAILED,
                error_code=outcome.error_code,
                message=outcome.message,
            )
        else:
            operation_mark_unknown(locked.operation, outcome)
    return False


def order_payments_void(*, order_id: uuid.UUID | str, actor: Actor) -> bool:
    """Void every live authorization of the order that it no longer uses. Return True
    when none is left to void (all voided, or none was held)."""
    payment_ids = list(
        Payment.objects.filter(order_id=order_id, status__in=VOIDABLE_STATUSES).values_list(
            "pk", flat=True
        )
    )
    for payment_id in payment_ids:
        payment_void(payment_id=payment_id, actor=actor)
    still_open = PaymentOperation.objects.filter(
        payment__order_id=order_id,
        payment__status__in=VOIDABLE_STATUSES,
        kind=PaymentOperation.Kind.VOID,
    ).exclude(status=PaymentOperation.Status.FAILED)
    still_held = (
        Payment.objects.filter(order_id=order_id, status=Payment.Status.AUTHORIZED)
        .exclude(order__status__in=STATUSES_USING_PAYMENT)
        .exists()
    )
    return not still_open.exists() and not still_held


def payment_void_unused(*, payment_id: int, actor: Actor) -> bool:
    """Void an authorization that is not the order's (flows.payment_outcomes.
    payment_unused_locked). Return True when nothing of it is left to void."""
    payment_void(payment_id=payment_id, actor=actor)
    return not Payment.objects.filter(
        pk=payment_id, status__in=VOIDABLE_STATUSES, is_current=False
    ).exists()
