"""Checkout with a card, over HTTP, against the fake Stripe server behind the proxy."""

from typing import Any

import pytest

from orders.models import Order
from payments.models import Payment
from tests.payments.conftest import (
    AUTHORIZE_PATH,
    DECLINING_CARD,
    GOOD_CARD,
    PRICE,
    THREE_D_SECURE_CARD,
    assert_provider_consistent,
    fake_post,
    history,
    in_thread,
    intent_retrieve,
    order_action,
    signed_event,
    stock_held,
    webhook_post,
)

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")

pytestmark = pytest.mark.django_db


def test_authorized_card_confirms_the_order(provider, checkout, customer_client, fake_stripe):
    response = checkout(customer_client, GOOD_CARD, quantity=2)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "confirmed"
    assert body["payment"] == {
        "status": "authorized",
        "amount": 2 * PRICE,
        "amount_captured": 0,
        "amount_refunded": 0,
        "currency": "EUR",
        "decline_code": "",
        "client_secret": None,
    }
    (intent,) = fake_stripe.payment_intents(order_id=body["id"])
    assert (intent["status"], intent["amount"], intent["capture_method"]) == (
        "requires_capture",
        2 * PRICE,
        "manual",
    )
    payment = Payment.objects.get(order_id=body["id"])
    assert payment.provider_payment_id == intent["id"]
    (authorize,) = payment.operations.all()
    assert (authorize.kind, authorize.status) == ("authorize", "succeeded")
    (sent,) = provider.sent(AUTHORIZE_PATH)
    assert sent.idempotency_key == authorize.idempotency_key
    assert history(body["id"]) == [("place", "pending_payment"), ("confirm", "confirmed")]
    assert stock_held(body["id"])
    assert_provider_consistent(fake_stripe, body["id"])


def test_declined_card_fails_the_payment_and_keeps_the_stock(
    provider, checkout, customer_client, fake_stripe
):
    response = checkout(customer_client, DECLINING_CARD)

    assert response.status_code == 402, response.json()
    problem = response.json()
    assert problem["code"] == "payment_declined"
    assert problem["decline_code"] == "card_declined"
    order = Order.objects.get(pk=problem["order_id"])
    assert order.status == "payment_failed"
    assert stock_held(order.pk)
    payment = Payment.objects.get(order=order)
    assert (payment.status, payment.decline_code) == ("failed", "card_declined")
    detail = customer_client.get(f"/api/v1/orders/{order.pk}/").json()
    assert detail["payment"]["status"] == "failed"
    assert detail["payment"]["decline_code"] == "card_declined"
    (declined,) = fake_stripe.payment_intents(order_id=str(order.pk))
    assert declined["status"] == "requires_payment_method"

    # The customer tries again with a good card.
    retried = order_action(customer_client, order.pk, "pay", {"payment_method": GOOD_CARD})

    assert retried.status_code == 200, retried.json()
    assert retried.json()["status"] == "confirmed"
    assert retried.json()["payment"]["status"] == "authorized"
    assert Payment.objects.filter(order=order).count() == 2
    assert history(order.pk) == [
        ("place", "pending_payment"),
        ("fail_payment", "payment_failed"),
        ("retry_payment", "pending_payment"),
        ("confirm", "confirmed"),
    ]
    assert stock_held(order.pk)
    totals = assert_provider_consistent(fake_stripe, order.pk)
    assert (totals["intents"], totals["authorized"]) == (2, 1)


def test_declined_checkout_replays_its_answer_for_the_same_key(provider, checkout, customer_client):
    first = checkout(customer_client, DECLINING_CARD, key="declined-once")
    again = checkout(customer_client, DECLINING_CARD, key="declined-once")

    assert (first.status_code, again.status_code) == (402, 402)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1
    assert len(provider.sent(AUTHORIZE_PATH)) == 1


def three_d_secure_checkout(checkout: Any, client: Any, fake_stripe: Any) -> dict[str, Any]:
    response = checkout(client, fake_stripe.create_card(THREE_D_SECURE_CARD))
    assert response.status_code == 201, response.json()
    body: dict[str, Any] = response.json()
    return body


def test_three_d_secure_waits_for_the_customer_then_the_webhook_confirms(
    provider, checkout, customer_client, anonymous_client, fake_stripe
):
    body = three_d_secure_checkout(checkout, customer_client, fake_stripe)

    # The order waits for the customer to authenticate, with what the browser needs.
    assert body["status"] == "pending_payment"
    assert body["payment"]["status"] == "requires_action"
    (intent,) = fake_stripe.payment_intents(order_id=body["id"])
    assert intent["status"] == "requires_action"
    assert body["payment"]["client_secret"] == intent["client_secret"]
    assert stock_held(body["id"])

    # The customer authenticates; Stripe says the amount is now capturable.
    fake_post(
        fake_stripe,
        f"/v1/payment_intents/{intent['id']}/_authenticate",
        {"client_secret": intent["client_secret"], "success": "true"},
    )
    authenticated = intent_retrieve(fake_stripe, intent["id"])
    assert authenticated["status"] == "requires_capture"
    event_body, signature = signed_event("payment_intent.amount_capturable_updated", authenticated)
    delivered = webhook_post(anonymous_client, event_body, signature)

    assert delivered.status_code == 200, delivered.json()
    assert delivered.json() == {"received": True, "duplicate": False}
    detail = customer_client.get(f"/api/v1/orders/{body['id']}/").json()
    assert detail["status"] == "confirmed"
    assert detail["payment"]["status"] == "authorized"
    assert detail["payment"]["client_secret"] is None
    assert history(body["id"]) == [("place", "pending_payment"), ("confirm", "confirmed")]

    # Stripe delivers the same event again: nothing changes.
    again = webhook_post(anonymous_client, event_body, signature)

    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert history(body["id"]) == [("place", "pending_payment"), ("confirm", "confirmed")]
    assert_provider_consistent(fake_stripe, body["id"])


def test_three_d_secure_pay_again_while_waiting_sends_nothing(
    provider, checkout, customer_client, fake_stripe
):
    body = three_d_secure_checkout(checkout, customer_client, fake_stripe)

    again = order_action(customer_client, body["id"], "pay", {"payment_method": GOOD_CARD})

    assert again.status_code == 200, again.json()
    assert again.json()["payment"]["status"] == "requires_action"
    assert len(provider.sent(AUTHORIZE_PATH)) == 1
    assert len(fake_stripe.payment_intents(order_id=body["id"])) == 1


def test_failed_three_d_secure_webhook_fails_the_payment(
    provider, checkout, customer_client, anonymous_client, fake_stripe
):
    body = three_d_secure_checkout(checkout, customer_client, fake_stripe)
    (intent,) = fake_stripe.payment_intents(order_id=body["id"])
    fake_post(
        fake_stripe,
        f"/v1/payment_intents/{intent['id']}/_authenticate",
        {"client_secret": intent["client_secret"], "success": "false"},
    )
    failed = intent_retrieve(fake_stripe, intent["id"])
    assert failed["status"] == "requires_payment_method"

    delivered = webhook_post(
        anonymous_client, *signed_event("payment_intent.payment_failed", failed)
    )

    assert delivered.status_code == 200
    order = Order.objects.get(pk=body["id"])
    assert order.status == "payment_failed"
    assert stock_held(order.pk)
    payment = Payment.objects.get(order=order)
    assert payment.status == "failed"
    assert_provider_consistent(fake_stripe, order.pk)


@pytest.mark.django_db(transaction=True)
def test_paying_twice_at_once_authorizes_once_and_confirms(
    provider, checkout, customer_client, fake_stripe
):
    # Given an order waiting for payment, and a slow answer to its first authorization
    order_id = checkout(customer_client, card=None).json()["id"]
    hold = provider.hold_response(path=AUTHORIZE_PATH)
    results: dict[str, Any] = {}
    first = in_thread(
        lambda: order_action(customer_client, order_id, "pay", {"payment_method": GOOD_CARD}),
        results,
        "first",
    )
    assert hold.answered.wait(10)

    # When the customer presses "pay" again meanwhile
    try:
        second = order_action(
            customer_client, order_id, "pay", {"payment_method": GOOD_CARD}, key="pay-again"
        )
    finally:
        hold.release.set()
        first.join(15)

    # Then the second is told to wait, and the first confirms the order
    assert second.status_code == 409, second.json()
    assert second.json()["code"] == "payment_operation_in_progress"
    assert results["first"].status_code == 200, results["first"].json()
    assert results["first"].json()["status"] == "confirmed"
    assert Order.objects.get(pk=order_id).status == "confirmed"
    assert history(order_id) == [("place", "pending_payment"), ("confirm", "confirmed")]
    totals = assert_provider_consistent(fake_stripe, order_id)
    assert (totals["intents"], totals["authorized"]) == (1, 1)
    # "In progress" is no outcome: retrying that key later gets the real answer.
    retried = order_action(
        customer_client, order_id, "pay", {"payment_method": GOOD_CARD}, key="pay-again"
    )
    assert retried.status_code == 200, retried.json()
    assert retried.json()["status"] == "confirmed"
    assert len(provider.sent(AUTHORIZE_PATH)) == 1
