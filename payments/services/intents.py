"""Bring a payment in line with the state of its PaymentIntent at the provider.

Used by every path that learns an intent's state (the API's own call, the webhook, the
reconciler). One small function per intent status, chosen from a table; each runs with
the payment locked, is a no-op when the change was already recorded, and returns what
changed so the order use case can decide what it means for the order.
"""

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from payments.gateways.base import IntentResult
from payments.models import Payment, PaymentOperation
from payments.services.operations import (
    LIVE_PAYMENT_STATUSES,
    OPEN_OPERATION_STATUSES,
    operation_open_locked,
    operation_settle,
    payment_capture_record,
    payment_fail,
)


def _authorize_open(payment: Payment, known: PaymentOperation | None) -> PaymentOperation | None:
    """The payment's open authorize operation, locked: the one the caller holds locked
    (a payment has one authorize operation), else read."""
    if known is not None:
        return known if known.status in OPEN_OPERATION_STATUSES else None
    return operation_open_locked(payment, PaymentOperation.Kind.AUTHORIZE)


def _taken(unsaved: list[str]) -> list[str]:
    """The fields set but not yet saved, now saved by the caller."""
    fields = list(unsaved)
    unsaved.clear()
    return fields


class IntentChange(enum.Enum):
    NONE = "none"  # nothing the order needs to know
    AUTHORIZED = "authorized"  # the payment holds the order's money
    # Authorized at the provider after the attempt was given up and another took over.
    LATE_AUTHORIZATION = "late_authorization"
    REQUIRES_ACTION = "requires_action"  # waiting for 3-D Secure
    FAILED = "failed"  # definitely not authorized (payment.decline_code says why)
    # Canceled at the provider before it authorized: the order's attempt failed.
    CANCELED_BEFORE_AUTHORIZATION = "canceled_before_authorization"
    VOIDED = "voided"  # an authorization released
    CAPTURED = "captured"  # money taken


def _requires_capture(
    payment: Payment, intent: IntentResult, known: PaymentOperation | None, unsaved: list[str]
) -> IntentChange:
    operation_settle(
        _authorize_open(payment, known),
        PaymentOperation.Status.SUCCEEDED,
        provider_object_id=intent.id,
    )
    if (
        payment.status == Payment.Status.FAILED
        and Payment.objects.filter(order_id=payment.order_id, status__in=LIVE_PAYMENT_STATUSES)
        .exclude(pk=payment.pk)
        .exists()
    ):
        return IntentChange.LATE_AUTHORIZATION
    if payment.status in (
        Payment.Status.PENDING,
        Payment.Status.REQUIRES_ACTION,
        Payment.Status.FAILED,
    ):
        payment.authorize()
        payment.client_secret = ""
        payment.save(update_fields=["status", "client_secret", "updated_at", *_taken(unsaved)])
    if payment.status != Payment.Status.AUTHORIZED:
        return IntentChange.NONE
    return IntentChange.AUTHORIZED


def _requires_action(
    payment: Payment, intent: IntentResult, known: PaymentOperation | None, unsaved: list[str]
) -> IntentChange:
    operation_settle(
        _authorize_open(payment, known),
        PaymentOperation.Status.SUCCEEDED,
        provider_object_id=intent.id,
    )
    if payment.status == Payment.Status.PENDING:
        payment.require_action()
        payment.client_secret = (intent.client_secret or "")[:255]
        payment.save(update_fields=["status", "client_secret", "updated_at", *_taken(unsaved)])
    return IntentChange.REQUIRES_ACTION


def _requires_payment_method(
    payment: Payment, intent: IntentResult, known: PaymentOperation | None, unsaved: list[str]
) -> IntentChange:
    decline_code = intent.decline_code or "payment_failed"
    operation_settle(
        _authorize_open(payment, known),
        PaymentOperation.Status.FAILED,
        provider_object_id=intent.id,
        error_code=decline_code,
    )
    payment_fail(payment, decline_code=decline_code)
    return IntentChange.FAILED


def _canceled(
    payment: Payment, intent: IntentResult, known: PaymentOperation | None, unsaved: list[str]
) -> IntentChange:
    operation_settle(
        _authorize_open(payment, known),
        PaymentOperation.Status.FAILED,
        error_code="canceled",
    )
    operation_settle(
        operation_open_locked(payment, PaymentOperation.Kind.VOID),
        PaymentOperation.Status.SUCCEEDED,
        provider_object_id=intent.id,
    )
    if payment.status not in (
        Payment.Status.PENDING,
        Payment.Status.REQUIRES_ACTION,
        Payment.Status.AUTHORIZED,
    ):
        return IntentChange.NONE
    was_authorized = payment.status == Payment.Status.AUTHORIZED
    payment.void()
    payment.save(update_fields=["status", "updated_at", *_taken(unsaved)])
    return IntentChange.VOIDED if was_authorized else IntentChange.CANCELED_BEFORE_AUTHORIZATION


def _succeeded(
    payment: Payment, intent: IntentResult, known: PaymentOperation | None, unsaved: list[str]
) -> IntentChange:
    """Captured for good (a final capture, or a cancel ending a partly captured intent):
    the open capture (at most one is open) is settled with it."""
    capture = operation_open_locked(payment, PaymentOperation.Kind.CAPTURE)
    if capture is None and payment.status != Payment.Status.AUTHORIZED:
        return IntentChange.NONE  # recorded before
    if capture is not None and not capture.final:
        # A capture meant to keep the rest, yet the intent is done: count it, then
        # record the payment captured for what the provider received.
        payment_capture_record(payment, capture, amount_received=intent.amount_received)
        capture = None
    payment_capture_record(payment, capture, amount_received=intent.amount_received)
    return IntentChange.CAPTURED


_BY_STATUS: dict[
    str, Callable[[Payment, IntentResult, PaymentOperation | None, list[str]], IntentChange]
] = {
    "requires_capture": _requires_capture,
    "requires_action": _requires_action,
    "requires_source_action": _requires_action,
    "requires_confirmation": _requires_action,
    "requires_payment_method": _requires_payment_method,
    "canceled": _canceled,
    "succeeded": _succeeded,
}


def intent_apply_to_payment(
    payment: Payment, intent: IntentResult, *, authorize_operation: PaymentOperation | None = None
) -> IntentChange:
    """Record the intent's state on the locked payment; return what changed.
    `authorize_operation`: the payment's authorize operation, when the caller holds it
    locked already (not read again)."""
    # Fields set here and saved with the status the intent brings, if it brings one.
    unsaved: list[str] = []
    if not payment.provider_payment_id:
        payment.provider_payment_id = intent.id
        unsaved.append("provider_payment_id")
    apply = _BY_STATUS.get(intent.status)
    change = IntentChange.NONE
    if apply is not None:
        change = apply(payment, intent, authorize_operation, unsaved)
    if unsaved:
        payment.save(update_fields=[*unsaved, "updated_at"])
    return change


@dataclass(frozen=True)
class AuthorizationPlanned:
    """An authorization applied in memory to a pending payment and its open authorize
    operation (`intent_authorized_planned`), for the caller to write: each row with the
    status it leaves (the state machine's source) in its WHERE."""

    operation_from_status: str
    payment_from_status: str


def intent_authorized_planned(
    payment: Payment, operation: PaymentOperation, intent: IntentResult, *, now: datetime
) -> AuthorizationPlanned | None:
    """Apply an authorized intent (requires_capture) to the locked pending payment that
    has no PaymentIntent yet and to its open authorize operation, in memory only, as
    `intent_apply_to_payment` would (the operation settled with the intent's id, the
    payment through its `authorize` transition with the intent's id and no client
    secret). Return None, changing nothing, for any other case: the caller records it
    with `intent_apply_to_payment`."""
    if (
        intent.status != "requires_capture"
        or payment.status != Payment.Status.PENDING
        or payment.provider_payment_id
        or operation.payment_id != payment.pk
        or operation.kind != PaymentOperation.Kind.AUTHORIZE
        or operation.status not in OPEN_OPERATION_STATUSES
    ):
        return None
    planned = AuthorizationPlanned(
        operation_from_status=operation.status, payment_from_status=payment.status
    )
    operation.status = PaymentOperation.Status.SUCCEEDED
    operation.provider_object_id = intent.id[:255]
    operation.error_code = ""
    operation.error_message = ""
    operation.updated_at = now
    payment.authorize()
    payment.provider_payment_id = intent.id
    payment.client_secret = ""
    payment.updated_at = now
    return planned
