"""Stripe webhooks over HTTP: signed events are applied once, anything else is refused."""

import time

import pytest
import stripe

from orders.models import Order
from payments.models import Payment, StripeEvent
from tests.conftest import run_concurrently
from tests.payments.conftest import (
    AUTHORIZE_PATH,
    CAPTURE_PATH,
    GOOD_CARD,
    PRICE,
    THREE_D_SECURE_CARD,
    WEBHOOK_SECRET,
    assert_provider_consistent,
    fake_post,
    history,
    intent_retrieve,
    order_action,
    signed_event,
    webhook_post,
)

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")


@pytest.fixture
def confirmed_order(provider, checkout, customer_client) -> Order:
    response = checkout(customer_client, GOOD_CARD)
    assert response.status_code == 201, response.json()
    return Order.objects.get(pk=response.json()["id"])


def intent_of(order: Order, fake_stripe) -> dict:
    payment = Payment.objects.get(order=order)
    return intent_retrieve(fake_stripe, payment.provider_payment_id or "")


def bad_signature(body: str, kind: str) -> str | None:
    """A Stripe-Signature header for `body` that must not be accepted."""
    if kind == "unsigned":
        return None
    if kind == "no-v1-signature":
        return f"t={int(time.time())}"
    if kind == "forged":
        return stripe.WebhookSignature.generate_signature_header(body, "whsec_someone_else")
    assert kind == "stale"
    return stripe.WebhookSignature.generate_signature_header(
        body, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600
    )


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["unsigned", "no-v1-signature", "forged", "stale"])
def test_unverified_webhooks_are_refused_and_nothing_is_stored(
    confirmed_order, anonymous_client, fake_stripe, kind
):
    intent = intent_of(confirmed_order, fake_stripe)
    body, _ = signed_event("payment_intent.canceled", {**intent, "status": "canceled"})

    response = webhook_post(anonymous_client, body, bad_signature(body, kind))

    assert response.status_code == 400
    assert response.json()["code"] == "webhook_signature_invalid"
    assert not StripeEvent.objects.exists()
    confirmed_order.refresh_from_db()
    assert confirmed_order.status == "confirmed"
    assert Payment.objects.get(order=confirmed_order).status == "authorized"


@pytest.mark.django_db
def test_a_signed_body_that_was_tampered_with_is_refused(
    confirmed_order, anonymous_client, fake_stripe
):
    intent = intent_of(confirmed_order, fake_stripe)
    body, signature = signed_event("payment_intent.succeeded", intent)
    tampered = body.replace('"requires_capture"', '"succeeded"')
    assert tampered != body

    response = webhook_post(anonymous_client, tampered, signature)

    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db
def test_duplicate_event_is_acknowledged_and_changes_nothing(
    confirmed_order, anonymous_client, fake_stripe
):
    intent = intent_of(confirmed_order, fake_stripe)
    body, signature = signed_event("payment_intent.amount_capturable_updated", intent)

    first = webhook_post(anonymous_client, body, signature)
    second = webhook_post(anonymous_client, body, signature)

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json() == {"received": True, "duplicate": False}
    assert second.json() == {"received": True, "duplicate": True}
    (stored,) = StripeEvent.objects.all()
    assert stored.processed_at is not None
    assert history(confirmed_order.pk) == [
        ("place", "pending_payment"),
        ("confirm", "confirmed"),
    ]


@pytest.mark.django_db
def test_webhook_for_an_unknown_intent_is_stored_and_ignored(anonymous_client, provider):
    body, signature = signed_event(
        "payment_intent.amount_capturable_updated",
        {
            "id": "pi_not_ours",
            "object": "payment_intent",
            "status": "requires_capture",
            "amount": 1000,
            "currency": "eur",
            "metadata": {},
        },
    )

    response = webhook_post(anonymous_client, body, signature)

    assert response.status_code == 200
    assert StripeEvent.objects.get().type == "payment_intent.amount_capturable_updated"


@pytest.mark.django_db(transaction=True)
def test_webhook_racing_the_checkout_response_confirms_the_order_once(
    provider, checkout, customer_client, anonymous_client, fake_stripe
):
    # Given the provider has authorized, but its answer to the checkout is slow
    hold = provider.hold_response(path=AUTHORIZE_PATH)
    results: dict = {}

    def deliver_webhook_meanwhile():
        assert hold.answered.wait(10), "the authorization never reached the provider"
        try:
            body, signature = signed_event(
                "payment_intent.amount_capturable_updated", hold.intent()
            )
            results["webhook"] = webhook_post(anonymous_client, body, signature)
            # The webhook confirmed the order while the checkout still waits.
            order_id = hold.intent()["metadata"]["order_id"]
            results["status_before_answer"] = Order.objects.get(pk=order_id).status
        finally:
            hold.release.set()

    # When the webhook arrives while the checkout waits for that answer
    response, _ = run_concurrently(
        [lambda: checkout(customer_client, GOOD_CARD), deliver_webhook_meanwhile], timeout=30
    )

    # Then the order is confirmed once, whichever path recorded it first
    assert results["webhook"].status_code == 200, results["webhook"].json()
    assert results["status_before_answer"] == "confirmed"
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "confirmed"
    assert body["payment"]["status"] == "authorized"
    assert history(body["id"]) == [("place", "pending_payment"), ("confirm", "confirmed")]
    assert Payment.objects.filter(order_id=body["id"]).count() == 1
    payment = Payment.objects.get(order_id=body["id"])
    assert payment.provider_payment_id == hold.intent()["id"]
    (authorize,) = payment.operations.all()
    assert authorize.status == "succeeded"
    assert_provider_consistent(fake_stripe, body["id"])


@pytest.mark.django_db(transaction=True)
def test_webhook_after_the_checkout_answered_is_a_no_op(
    provider, checkout, customer_client, anonymous_client, fake_stripe
):
    response = checkout(customer_client, GOOD_CARD)
    order_id = response.json()["id"]
    intent = intent_retrieve(
        fake_stripe, Payment.objects.get(order_id=order_id).provider_payment_id
    )

    late = webhook_post(
        anonymous_client, *signed_event("payment_intent.amount_capturable_updated", intent)
    )

    assert late.status_code == 200
    assert late.json()["duplicate"] is False
    assert history(order_id) == [("place", "pending_payment"), ("confirm", "confirmed")]
    assert_provider_consistent(fake_stripe, order_id)


@pytest.mark.django_db(transaction=True)
def test_capture_webhook_racing_the_ship_response_ships_once(
    provider, checkout, customer_client, staff_client, anonymous_client, fake_stripe
):
    order_id = checkout(customer_client, GOOD_CARD).json()["id"]
    hold = provider.hold_response(path=CAPTURE_PATH)
    results: dict = {}

    def deliver_webhook_meanwhile():
        assert hold.answered.wait(10), "the capture never reached the provider"
        try:
            body, signature = signed_event("payment_intent.succeeded", hold.intent())
            results["webhook"] = webhook_post(anonymous_client, body, signature)
        finally:
            hold.release.set()

    response, _ = run_concurrently(
        [lambda: order_action(staff_client, order_id, "ship"), deliver_webhook_meanwhile],
        timeout=30,
    )

    assert results["webhook"].status_code == 200
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "shipped"
    assert response.json()["payment"]["amount_captured"] == PRICE
    transitions = [transition for transition, _ in history(order_id)]
    assert transitions == ["place", "confirm", "route", "ship"]
    assert len(provider.sent(CAPTURE_PATH)) == 1
    totals = assert_provider_consistent(fake_stripe, order_id)
    assert totals["captures"] == 1


@pytest.mark.django_db
def test_late_authorization_of_an_abandoned_attempt_is_voided(
    provider, checkout, customer_client, anonymous_client, fake_stripe
):
    # Given 3-D Secure failed, and the customer then paid with another card
    body = checkout(customer_client, fake_stripe.create_card(THREE_D_SECURE_CARD)).json()
    (first,) = fake_stripe.payment_intents(order_id=body["id"])
    fake_post(
        fake_stripe,
        f"/v1/payment_intents/{first['id']}/_authenticate",
        {"client_secret": first["client_secret"], "success": "false"},
    )
    failed = intent_retrieve(fake_stripe, first["id"])
    assert webhook_post(
        anonymous_client, *signed_event("payment_intent.payment_failed", failed)
    ).json() == {"received": True, "duplicate": False}
    paid = order_action(customer_client, body["id"], "pay", {"payment_method": GOOD_CARD})
    assert paid.json()["status"] == "confirmed"

    # When Stripe reports the first intent authorized after all (the browser confirmed it
    # again with the client secret it had)
    late = {**failed, "status": "requires_capture", "last_payment_error": None}
    response = webhook_post(
        anonymous_client, *signed_event("payment_intent.amount_capturable_updated", late)
    )

    # Then that authorization is released and the order keeps the one it confirmed with
    assert response.status_code == 200, response.content
    assert intent_retrieve(fake_stripe, first["id"])["status"] == "canceled"
    assert provider.sent(r"^/v1/payment_intents/[^/]+/cancel$")[0].path.startswith(
        f"/v1/payment_intents/{first['id']}/"
    )
    order = Order.objects.get(pk=body["id"])
    assert order.status == "confirmed"
    live = Payment.objects.get(order=order, status="authorized")
    assert live.provider_payment_id != first["id"]
    assert_provider_consistent(fake_stripe, order.pk)
