"""Correctly signed Stripe events carrying text PostgreSQL cannot store as sent (NUL,
lone surrogates in customer-typed fields) or ids and types longer than their columns:
stored safely, applied, recognised when repeated; the next ordinary event still works."""

import json
import time
from typing import Any

import pytest
import stripe

from orders.models import Order
from payments.models import Payment, StripeEvent
from tests.inputs.conftest import assert_problem, stored_state
from tests.payments.conftest import (
    THREE_D_SECURE_CARD,
    WEBHOOK_SECRET,
    intent_retrieve,
    signed_event,
    webhook_post,
)

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")

HOSTILE = "Ada \u0000 Lovelace \ud800 \udfff \U0001f600"
LONG_ID = "evt_" + "\u0000" + "x" * 400


def signed(event: dict[str, Any]) -> tuple[str, str]:
    body = json.dumps({"object": "event", "created": int(time.time()), **event})
    return body, stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)


@pytest.fixture
def awaiting_payment(provider, checkout, customer_client, fake_stripe) -> tuple[Order, dict]:
    """An order whose payment waits for 3-D Secure, and its intent at the provider."""
    response = checkout(customer_client, fake_stripe.create_card(THREE_D_SECURE_CARD))
    assert response.status_code == 201, response.json()
    order = Order.objects.get(pk=response.json()["id"])
    payment = Payment.objects.get(order=order)
    assert payment.status == Payment.Status.REQUIRES_ACTION
    return order, intent_retrieve(fake_stripe, payment.provider_payment_id or "")


@pytest.mark.django_db
def test_a_failed_payment_event_full_of_hostile_text_is_stored_safely_and_applied(
    awaiting_payment, anonymous_client
):
    order, intent = awaiting_payment
    failed = {
        **intent,
        "status": "requires_payment_method",
        "description": HOSTILE,
        "metadata": {**intent["metadata"], "note\u0000": HOSTILE},
        "shipping": {"name": HOSTILE, "address": {"line1": "x" * 10_000}},
        "last_payment_error": {
            "code": "card_declined",
            "decline_code": "do_not_honor\u0000\ud800" + "z" * 100,
            "message": HOSTILE * 100,
        },
    }
    body, signature = signed(
        {"id": LONG_ID, "type": "payment_intent.payment_failed", "data": {"object": failed}}
    )

    response = webhook_post(anonymous_client, body, signature)
    repeat = webhook_post(anonymous_client, body, signature)

    assert response.status_code == 200, response.content
    assert response.json() == {"received": True, "duplicate": False}
    assert repeat.json() == {"received": True, "duplicate": True}
    stored = StripeEvent.objects.get()
    assert stored.processed_at is not None
    assert len(stored.event_id) == 255
    assert stored.event_id.startswith("evt_\\u0000xxx")
    assert bytes(stored.body) == body.encode()
    assert stored.payload["data"]["object"]["description"] == (
        "Ada \\u0000 Lovelace \\ud800 \\udfff \U0001f600"
    )
    assert "note\\u0000" in stored.payload["data"]["object"]["metadata"]
    payment = Payment.objects.get(order=order)
    assert payment.status == Payment.Status.FAILED
    assert payment.decline_code.startswith("do_not_honor\\u0000\\ud800")
    assert len(payment.decline_code) == 64
    order.refresh_from_db()
    assert order.status == "payment_failed"


@pytest.mark.django_db
def test_over_long_ids_that_share_a_prefix_are_different_events(anonymous_client, provider):
    unknown = {"id": "pi_not_ours", "status": "succeeded", "amount": 1, "currency": "eur"}
    first = signed({"id": "evt_" + "a" * 300 + "1", "type": "x" * 300, "data": {"object": unknown}})
    second = signed(
        {"id": "evt_" + "a" * 300 + "2", "type": "x" * 300, "data": {"object": unknown}}
    )

    answers = [webhook_post(anonymous_client, *event).json() for event in (first, second, first)]

    assert [answer["duplicate"] for answer in answers] == [False, False, True]
    assert StripeEvent.objects.count() == 2
    assert {len(event.type) for event in StripeEvent.objects.all()} == {128}


@pytest.mark.django_db
def test_a_signed_event_with_a_type_full_of_hostile_text_is_stored_and_ignored(
    anonymous_client, provider
):
    body, signature = signed(
        {"id": f"evt_{HOSTILE}", "type": f"payment_intent.{HOSTILE}", "data": {"object": {}}}
    )

    response = webhook_post(anonymous_client, body, signature)

    assert response.json() == {"received": True, "duplicate": False}
    assert StripeEvent.objects.get().processed_at is not None


@pytest.mark.django_db
def test_a_signed_intent_event_that_is_not_an_intent_is_refused_and_not_stored(
    anonymous_client, provider
):
    before = stored_state()
    body, signature = signed_event("payment_intent.succeeded", {"id": HOSTILE})

    response = webhook_post(anonymous_client, body, signature)

    assert_problem(response, 400, "webhook_signature_invalid")
    assert stored_state() == before


@pytest.mark.django_db
def test_after_hostile_events_an_ordinary_event_still_confirms_the_order(
    awaiting_payment, anonymous_client
):
    order, intent = awaiting_payment
    hostile = signed({"id": LONG_ID, "type": HOSTILE, "data": {"object": {"description": HOSTILE}}})
    webhook_post(anonymous_client, *hostile)

    body, signature = signed_event(
        "payment_intent.amount_capturable_updated",
        {**intent, "status": "requires_capture", "amount_capturable": intent["amount"]},
    )
    response = webhook_post(anonymous_client, body, signature)

    assert response.json() == {"received": True, "duplicate": False}
    order.refresh_from_db()
    assert order.status == "confirmed"
    assert StripeEvent.objects.count() == 2
