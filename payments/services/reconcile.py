"""Resolve what the request path left open: operations with an unknown outcome, orders
stuck waiting for payment, and authorizations whose order no longer wants them."""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.actors import Actor
from orders.services import order_lock
from orders.states import OrderStatus
from payments.gateways import base as gateway
from payments.models import Payment, PaymentOperation
from payments.provider import ProviderCircuitOpen, provider_call
from payments.services.capture import order_ship
from payments.services.refunds import order_refund
from payments.services.state import (
    OPEN_OPERATION_STATUSES,
    intent_apply_locked,
    operation_settle,
    payment_fail_locked,
)
from payments.services.voids import VOIDABLE_STATUSES, payment_void

logger = logging.getLogger(__name__)

UNREACHABLE = (gateway.ProviderUnavailable, gateway.OutcomeUnknown, ProviderCircuitOpen)


@dataclass
class ReconcileReport:
    resolved: int = 0
    voided: int = 0
    still_unknown: int = 0
    errors: list[str] = field(default_factory=list)


def _authorization_resolve(payment: Payment, operation: PaymentOperation, actor: Actor) -> bool:
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
        order = order_lock(order_id=payment.order_id)
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        operation = PaymentOperation.objects.select_for_update().get(pk=operation.pk)
        if operation.status not in OPEN_OPERATION_STATUSES:
            return True
        if matching:
            needs_void = intent_apply_locked(
                order=order, payment=payment, intent=matching[0], actor=actor
            )
            operation_settle(operation, PaymentOperation.Status.SUCCEEDED)
        else:
            # Nothing reached the provider: the attempt definitely failed.
            operation_settle(
                operation,
                PaymentOperation.Status.FAILED,
                error_code="not_found_at_provider",
                message="no PaymentIntent was created for this attempt",
            )
            payment_fail_locked(
                order=order,
                payment=payment,
                decline_code="",
                actor=actor,
                reason="payment attempt never reached the provider",
            )
    if needs_void:
        payment_void(payment_id=payment.pk, actor=actor)
    return True


def _intent_retrieve(intent_id: str) -> gateway.IntentResult:
    return provider_call(lambda g: g.retrieve(intent_id=intent_id))


def _capture_resolve(payment: Payment, operation: PaymentOperation, actor: Actor) -> None:
    intent = _intent_retrieve(payment.provider_payment_id or "")
    if intent.status == "requires_capture":
        # Not captured: send the same capture again (same key), as staff asked to ship.
        # Past the grace period a pending capture is not in flight (its process died):
        # mark it unknown, or order_ship refuses it as in progress forever.
        PaymentOperation.objects.filter(
            pk=operation.pk, status=PaymentOperation.Status.PENDING
        ).update(status=PaymentOperation.Status.UNKNOWN)
        order_ship(order_id=payment.order_id, actor=actor)
        return
    with transaction.atomic():
        order = order_lock(order_id=payment.order_id)
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        intent_apply_locked(order=order, payment=payment, intent=intent, actor=actor)


def payments_reconcile(*, now: datetime | None = None) -> ReconcileReport:
    """One pass of the reconciler. Safe to run concurrently with requests and itself."""
    now = now or timezone.now()
    settled_before = now - timedelta(seconds=settings.PAYMENT_RECONCILE_GRACE_SECONDS)
    actor = Actor.system()
    report = ReconcileReport()
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

    # Orders waiting on 3-D Secure (or a lost response) longer than the grace period.
    stuck = Payment.objects.filter(
        status=Payment.Status.REQUIRES_ACTION,
        order__status=OrderStatus.PENDING_PAYMENT,
        updated_at__lt=settled_before,
    ).exclude(provider_payment_id=None)
    for payment in stuck:
        try:
            intent = _intent_retrieve(payment.provider_payment_id or "")
            with transaction.atomic():
                order = order_lock(order_id=payment.order_id)
                locked = Payment.objects.select_for_update().get(pk=payment.pk)
                if intent_apply_locked(order=order, payment=locked, intent=intent, actor=actor):
                    transaction.on_commit(
                        lambda p=locked.pk: payment_void(payment_id=p, actor=actor)  # type: ignore[misc]
                    )
            report.resolved += 1
        except UNREACHABLE:
            report.still_unknown += 1

    # Authorizations whose order was cancelled or expired: void them.
    stray = Payment.objects.filter(status__in=VOIDABLE_STATUSES).filter(
        Q(order__status=OrderStatus.CANCELLED)
        | Q(order__status=OrderStatus.EXPIRED)
        | Q(order__status=OrderStatus.PAYMENT_FAILED)
    )
    for payment in stray:
        try:
            if payment_void(payment_id=payment.pk, actor=actor):
                report.voided += 1
        except UNREACHABLE:
            report.still_unknown += 1
    return report
