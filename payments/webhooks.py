"""Stripe webhook events: verify, store once by id, apply through the payment services."""

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.actors import Actor
from orders.services import order_lock
from payments.errors import WebhookSignatureInvalid
from payments.gateways import base as gateway
from payments.gateways.stripe import intent_from_object, verify_webhook
from payments.models import Payment, StripeEvent
from payments.services.state import intent_apply_locked, refund_recorded_locked
from payments.services.voids import payment_void

logger = logging.getLogger(__name__)

INTENT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.amount_capturable_updated",
        "payment_intent.canceled",
        "payment_intent.requires_action",
    }
)


def stripe_event_receive(*, payload: bytes, signature: str | None) -> bool:
    """Verify and apply one event. Return False for a duplicate (already stored).

    The event is stored and applied in one transaction: if applying fails, nothing is
    stored and Stripe's retry gets another chance.
    """
    try:
        event = verify_webhook(
            payload,
            signature,
            settings.STRIPE_WEBHOOK_SECRET,
            tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
        )
        event_id = str(event["id"])
        event_type = str(event["type"])
        event_object = event["data"]["object"]
    except gateway.WebhookSignatureInvalid as error:
        raise WebhookSignatureInvalid(f"Rejected webhook: {error.reason}.") from error
    except (ValueError, KeyError, TypeError) as error:
        raise WebhookSignatureInvalid("Rejected webhook: malformed event.") from error

    to_void: list[int] = []
    with transaction.atomic():
        try:
            with transaction.atomic():
                stored = StripeEvent.objects.create(
                    event_id=event_id, type=event_type, payload=event
                )
        except IntegrityError:
            return False
        to_void = _event_apply(event_type, event_object)
        stored.processed_at = timezone.now()
        stored.save(update_fields=["processed_at"])
    for payment_id in to_void:
        payment_void(payment_id=payment_id, actor=Actor.system())
    return True


def _payment_for(intent_id: str, metadata: dict[str, Any]) -> Payment | None:
    payment = Payment.objects.filter(provider_payment_id=intent_id).first()
    if payment is None and str(metadata.get("payment_id", "")).isdigit():
        # The webhook can beat the checkout's own record of the intent id.
        payment = Payment.objects.filter(pk=int(metadata["payment_id"])).first()
    return payment


def _event_apply(event_type: str, event_object: dict[str, Any]) -> list[int]:
    """Apply the event inside the caller's transaction; return payments to void after."""
    actor = Actor.system()
    if event_type in INTENT_EVENTS:
        intent = intent_from_object(event_object)
        payment = _payment_for(intent.id, intent.metadata)
        if payment is None:
            logger.info("Webhook %s for unknown intent %s ignored", event_type, intent.id)
            return []
        order = order_lock(order_id=payment.order_id)
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        if intent_apply_locked(order=order, payment=payment, intent=intent, actor=actor):
            return [payment.pk]
        return []
    if event_type == "charge.refunded":
        intent_id = str(event_object.get("payment_intent") or "")
        payment = _payment_for(intent_id, event_object.get("metadata") or {})
        if payment is None:
            return []
        order = order_lock(order_id=payment.order_id)
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        refund_recorded_locked(
            order=order,
            payment=payment,
            amount_refunded_total=int(event_object.get("amount_refunded") or 0),
            actor=actor,
        )
    return []
