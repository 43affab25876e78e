"""Apply what the payment provider reports on its own: Stripe webhook events.

One transaction per event: store it once by id (a repeat is answered as a duplicate
and changes nothing), lock the order and payment, apply it through
flows.payment_outcomes (intents) or flows.refund (refunds). If applying fails, nothing
is stored and Stripe's retry gets another chance. A stray authorization the event
reveals is voided after commit.
"""

import logging

from django.db import transaction

from core.actors import Actor
from flows.lock_objects import payment_lock
from flows.payment_outcomes import payment_intent_apply_locked
from flows.refund import refund_recorded_locked
from flows.void import payment_void
from payments.errors import WebhookSignatureInvalid
from payments.gateways.stripe import intent_from_object
from payments.webhooks import (
    INTENT_EVENTS,
    REFUND_EVENTS,
    VerifiedEvent,
    payment_for_intent,
    stripe_event_mark_processed,
    stripe_event_store,
    stripe_event_verify,
)

logger = logging.getLogger(__name__)


def _event_apply(event: VerifiedEvent, actor: Actor) -> list[int]:
    """Apply the event inside the caller's transaction; return payments to void after."""
    if event.type in INTENT_EVENTS:
        try:
            intent = intent_from_object(event.object)
        except (KeyError, TypeError, ValueError) as error:
            # Signed, but not a PaymentIntent oms can read: refused, nothing stored.
            raise WebhookSignatureInvalid("Rejected webhook: malformed payment intent.") from error
        payment = payment_for_intent(intent.id, intent.metadata)
        if payment is None:
            logger.info("Webhook %s for unknown intent %s ignored", event.type, intent.id)
            return []
        locked = payment_lock(payment_id=payment.pk)
        if payment_intent_apply_locked(
            order=locked.order, payment=locked.payment, intent=intent, actor=actor
        ):
            return [payment.pk]
        return []
    if event.type in REFUND_EVENTS:
        metadata = event.object.get("metadata") or {}
        try:
            amount_refunded_total = int(event.object.get("amount_refunded") or 0)
            if not isinstance(metadata, dict):
                raise TypeError("metadata is not an object")
        except (TypeError, ValueError) as error:
            raise WebhookSignatureInvalid("Rejected webhook: malformed charge.") from error
        intent_id = str(event.object.get("payment_intent") or "")
        payment = payment_for_intent(intent_id, metadata)
        if payment is None:
            return []
        locked = payment_lock(payment_id=payment.pk)
        refund_recorded_locked(
            order=locked.order,
            payment=locked.payment,
            amount_refunded_total=amount_refunded_total,
            actor=actor,
        )
    return []


def stripe_event_receive(*, payload: bytes, signature: str | None) -> bool:
    """Verify, store and apply one event. Return False for a duplicate."""
    event = stripe_event_verify(payload=payload, signature=signature)
    actor = Actor.system()
    with transaction.atomic():
        stored = stripe_event_store(event)
        if stored is None:
            return False
        to_void = _event_apply(event, actor)
        stripe_event_mark_processed(stored)
    for payment_id in to_void:
        payment_void(payment_id=payment_id, actor=actor)
    return True
