"""The reconciler: repair what the request paths left open. Runs every minute.

- Operations whose outcome is unknown (a timeout, a dead process): read the provider's
  state back, or send the same operation again with the same key (captures: one open
  at a time per payment; a later one is owed only once the earlier ones settled).
- Orders waiting on 3-D Secure (or a lost response) longer than the grace period.
- Authorizations whose order no longer wants them (cancelled, expired, failed), or that
  an order edit replaced or took and did not use: void. An edit's authorization that no
  commit finished within ORDER_EDIT_AUTHORIZATION_HOLD: fail the edit, void it.
- Money captured on an order that did not ship (cancelled or expired): refund it all.

Each repair goes through the use case that owns it (pay, ship, void, refund), so the
reconciler racing a request or itself moves money once. Safe to run concurrently.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.actors import Actor
from flows.edit import order_edit_authorizations_release
from flows.lock_objects import operation_lock, payment_lock
from flows.payment_outcomes import payment_declined_locked, payment_intent_apply_locked
from flows.refund import UNSHIPPED_STATUSES, order_refund, order_refund_unshipped_capture
from flows.ship import order_capture_record_locked, order_captures_take
from flows.void import payment_void
from orders.states import OrderStatus
from payments.errors import ProviderCircuitOpen
from payments.gateways import base as gateway
from payments.models import Payment, PaymentOperation
from payments.provider import provider_call
from payments.services.operations import (
    OPEN_OPERATION_STATUSES,
    VOIDABLE_STATUSES,
    operation_settle,
)

logger = logging.getLogger(__name__)

UNREACHABLE = (gateway.ProviderUnavailable, gateway.OutcomeUnknown, ProviderCircuitOpen)


@dataclass
class ReconcileReport:
    resolved: int = 0
    voided: int = 0
    refunded: int = 0
    still_unknown: int = 0
    errors: list[str] = field(default_factory=list)


def _authorization_resolve(payment: Payment, operation: PaymentOperation, actor: Actor) -> None:
    """Read the order's PaymentIntents back and record what the provider has."""
    intents = provider_call(lambda g: g.find_by_order(order_id=str(payment.order_id)))
    matching = [
        intent
        for intent in intents
        if intent.id == payment.provider_payment_id
        or str(intent.metadata.get("payment_id", "")) == str(payment.pk)
    ]
    needs_void = False
    with transaction.atomic():
        locked = operation_lock(operation_id=operation.pk)
        if locked.operation.status not in OPEN_OPERATION_STATUSES:
            return
        if matching:
            needs_void = payment_intent_apply_locked(
                order=locked.order, payment=locked.payment, intent=matching[0], actor=actor
            )
            operation_settle(locked.operation, PaymentOperation.Status.SUCCEEDED)
        else:
            # Nothing reached the provider: the attempt definitely failed.
            operation_settle(
                locked.operation,
                PaymentOperation.Status.FAILED,
                error_code="not_found_at_provider",
                message="no PaymentIntent was created for this attempt",
            )
            payment_declined_locked(
                order=locked.order,
                payment=locked.payment,
                decline_code="",
                actor=actor,
                reason="payment attempt never reached the provider",
            )
    if needs_void:
        payment_void(payment_id=payment.pk, actor=actor)


def _intent_retrieve(intent_id: str) -> gateway.IntentResult:
    return provider_call(lambda g: g.retrieve(intent_id=intent_id))


def _intent_apply(payment: Payment, intent: gateway.IntentResult, actor: Actor) -> None:
    with transaction.atomic():
        locked = payment_lock(payment_id=payment.pk)
        needs_void = payment_intent_apply_locked(
            order=locked.order, payment=locked.payment, intent=intent, actor=actor
        )
    if needs_void:
        payment_void(payment_id=payment.pk, actor=actor)


def _capture_resolve(payment: Payment, operation: PaymentOperation, actor: Actor) -> None:
    """A capture whose outcome is unknown. The intent still `requires_capture`: a capture
    that is not final happened when the provider received this one's amount on top of
    the captures recorded before it (captures go out one at a time); otherwise send the
    same capture again (same key) and those owed after it. A `succeeded` intent records
    the final capture."""
    intent = _intent_retrieve(payment.provider_payment_id or "")
    if intent.status == "requires_capture":
        with transaction.atomic():
            locked = operation_lock(operation_id=operation.pk)
            if locked.operation.status not in OPEN_OPERATION_STATUSES:
                return
            expected = locked.payment.amount_captured + locked.operation.amount
            if not locked.operation.final and intent.amount_received >= expected:
                order_capture_record_locked(
                    locked=locked, amount_received=intent.amount_received, actor=actor
                )
            else:
                # Past the grace period a pending capture is not in flight (its process
                # died): mark it unknown, or it is refused as in progress forever.
                if locked.operation.status == PaymentOperation.Status.PENDING:
                    locked.operation.status = PaymentOperation.Status.UNKNOWN
                    locked.operation.save(update_fields=["status", "updated_at"])
        order_captures_take(order_id=payment.order_id, actor=actor)
        return
    _intent_apply(payment, intent, actor)


def _open_operations_resolve(
    settled_before: datetime, actor: Actor, report: ReconcileReport
) -> None:
    open_operations = (
        PaymentOperation.objects.filter(
            status__in=OPEN_OPERATION_STATUSES, updated_at__lt=settled_before
        )
        .select_related("payment")
        .order_by("pk")
    )
    for operation in open_operations:
        payment = operation.payment
        try:
            if operation.kind == PaymentOperation.Kind.AUTHORIZE:
                _authorization_resolve(payment, operation, actor)
            elif operation.kind == PaymentOperation.Kind.CAPTURE:
                _capture_resolve(payment, operation, actor)
            elif operation.kind == PaymentOperation.Kind.VOID:
                payment_void(payment_id=payment.pk, actor=actor)
            elif operation.kind == PaymentOperation.Kind.REFUND:
                order_refund(
                    order_id=payment.order_id,
                    amount=None,
                    actor=actor,
                    resume_operation_id=operation.pk,
                )
            report.resolved += 1
        except UNREACHABLE as error:
            report.still_unknown += 1
            logger.warning("Reconcile of operation %s postponed: %s", operation.pk, error)
        except Exception as error:  # keep going: one bad row must not stop the pass
            logger.exception("Reconcile of operation %s failed", operation.pk)
            report.errors.append(f"operation {operation.pk}: {error}")


def payments_reconcile(*, now: datetime | None = None) -> ReconcileReport:
    """One pass of the reconciler. Safe to run concurrently with requests and itself."""
    now = now or timezone.now()
    settled_before = now - timedelta(seconds=settings.PAYMENT_RECONCILE_GRACE_SECONDS)
    actor = Actor.system()
    report = ReconcileReport()
    _open_operations_resolve(settled_before, actor, report)

    # Orders waiting on 3-D Secure (or a lost response) longer than the grace period.
    stuck = Payment.objects.filter(
        status=Payment.Status.REQUIRES_ACTION,
        order__status=OrderStatus.PENDING_PAYMENT,
        updated_at__lt=settled_before,
    ).exclude(provider_payment_id=None)
    for payment in stuck:
        try:
            _intent_apply(payment, _intent_retrieve(payment.provider_payment_id or ""), actor)
            report.resolved += 1
        except UNREACHABLE:
            report.still_unknown += 1

    # Edits whose re-authorization no commit finished: fail them, void it.
    try:
        report.voided += order_edit_authorizations_release(
            held_before=now - settings.ORDER_EDIT_AUTHORIZATION_HOLD, actor=actor
        )
    except UNREACHABLE:
        report.still_unknown += 1

    # Authorizations whose order was cancelled, expired or failed its payment, or that
    # are not the order's (an edit replaced it, or took it and did not use it): void
    # them (flows.void decides; an edit still proposed may yet adopt its own).
    stray = Payment.objects.filter(
        Q(
            order__status__in=[
                OrderStatus.CANCELLED,
                OrderStatus.EXPIRED,
                OrderStatus.PAYMENT_FAILED,
            ]
        )
        | Q(is_current=False),
        status__in=VOIDABLE_STATUSES,
    )
    for payment in stray:
        try:
            if payment_void(payment_id=payment.pk, actor=actor):
                report.voided += 1
        except UNREACHABLE:
            report.still_unknown += 1

    # Money captured on an order that never shipped: refund what is left of it.
    captured_unshipped = Payment.objects.filter(
        status=Payment.Status.CAPTURED,
        order__status__in=UNSHIPPED_STATUSES,
        amount_refunded__lt=F("amount_captured"),
    ).exclude(
        operations__kind=PaymentOperation.Kind.REFUND,
        operations__status__in=OPEN_OPERATION_STATUSES,
    )
    for payment in captured_unshipped:
        try:
            order_refund_unshipped_capture(order_id=payment.order_id, actor=actor)
            report.refunded += 1
        except UNREACHABLE:
            report.still_unknown += 1
        except Exception as error:  # keep going
            logger.exception("Refund of captured payment %s failed", payment.pk)
            report.errors.append(f"payment {payment.pk}: {error}")
    return report
