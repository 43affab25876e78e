"""Stripe webhook events: verify the signature, store each event once by its id.

What an event means for an order is decided by the order use case
(flows.provider_reports), which stores and applies it in one transaction.
"""

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.text import json_storable, text_fit
from payments.errors import WebhookSignatureInvalid
from payments.gateways import base as gateway
from payments.gateways.stripe import verify_webhook
from payments.models import Payment, StripeEvent

INTENT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.amount_capturable_updated",
        "payment_intent.canceled",
        "payment_intent.requires_action",
    }
)
REFUND_EVENTS = frozenset({"charge.refunded"})


EVENT_ID_MAX_LENGTH = 255
EVENT_TYPE_MAX_LENGTH = 128


@dataclass(frozen=True)
class VerifiedEvent:
    """A genuine event as oms handles it: every string storable (NUL and lone surrogates
    escaped, see core.text), id and type fitted to their columns; `body` the exact
    bytes Stripe sent."""

    id: str
    type: str
    object: dict[str, Any]
    raw: dict[str, Any]
    body: bytes = b""


def stripe_event_verify(*, payload: bytes, signature: str | None) -> VerifiedEvent:
    """Check the signature and shape; raise WebhookSignatureInvalid otherwise.

    Real events carry customer-typed text (names, descriptions, metadata), which may
    hold anything JSON can: the event is made storable here, once, so that neither
    storing nor applying it can fail on its text.
    """
    try:
        event = verify_webhook(
            payload,
            signature,
            settings.STRIPE_WEBHOOK_SECRET,
            tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
            max_depth=settings.JSON_MAX_DEPTH,
        )
        storable = json_storable(event)
        data_object = storable["data"]["object"]
        if not isinstance(data_object, dict):
            raise TypeError("data.object is not an object")
        return VerifiedEvent(
            # Fitted from the text as sent, so a repeat of an unusual id still matches.
            id=text_fit(str(event["id"]), EVENT_ID_MAX_LENGTH),
            type=text_fit(str(event["type"]), EVENT_TYPE_MAX_LENGTH),
            object=data_object,
            raw=storable,
            body=bytes(payload),
        )
    except gateway.WebhookSignatureInvalid as error:
        raise WebhookSignatureInvalid(f"Rejected webhook: {error.reason}.") from error
    except (ValueError, KeyError, TypeError) as error:
        raise WebhookSignatureInvalid("Rejected webhook: malformed event.") from error


def stripe_event_store(event: VerifiedEvent) -> StripeEvent | None:
    """Store the event inside the caller's transaction; None when it was stored before."""
    try:
        with transaction.atomic():
            return StripeEvent.objects.create(
                event_id=event.id, type=event.type, payload=event.raw, body=event.body
            )
    except IntegrityError:
        return None


def stripe_event_mark_processed(stored: StripeEvent) -> None:
    stored.processed_at = timezone.now()
    stored.save(update_fields=["processed_at"])


def payment_for_intent(intent_id: str, metadata: dict[str, Any]) -> Payment | None:
    """The payment an intent belongs to: by its id, else by the id we put in metadata
    (the webhook can beat the checkout's own record of the intent id)."""
    payment = Payment.objects.filter(provider_payment_id=intent_id).first() if intent_id else None
    if payment is None and str(metadata.get("payment_id", "")).isdigit():
        payment = Payment.objects.filter(pk=int(metadata["payment_id"])).first()
    return payment
