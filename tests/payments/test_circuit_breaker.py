"""The payment provider's circuit breaker: opens after repeated failures, fails fast
without sending anything while open, and closes again after a successful probe."""

import time
from typing import Any

import pytest

from core.breakers import circuit_breakers_reset
from orders.models import Order
from payments.models import Payment, PaymentOperation
from tests.payments.conftest import (
    AUTHORIZE_PATH,
    CAPTURE_PATH,
    GOOD_CARD,
    PRICE,
    REFUND_PATH,
    ProviderProxy,
    assert_provider_consistent,
    order_action,
    stock_held,
)

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")

pytestmark = pytest.mark.django_db

FAIL_MAX = 3
RESET_SECONDS = 1
FAIL_FAST_SECONDS = 1.0  # the read timeout is 5 s: failing fast is far below it


@pytest.fixture
def breaker(provider: ProviderProxy, settings: Any) -> ProviderProxy:
    settings.PAYMENT_BREAKER_FAIL_MAX = FAIL_MAX
    settings.PAYMENT_BREAKER_RESET_SECONDS = RESET_SECONDS
    circuit_breakers_reset()
    return provider


def breaker_state(client: Any) -> str:
    response = client.get("/health/")
    assert response.status_code == 200
    state: str = response.json()["payment_provider_breaker"]
    return state


def open_the_breaker(proxy: ProviderProxy, checkout: Any, client: Any) -> None:
    """Make the provider fail (500) FAIL_MAX times in a row; the fault stays on."""
    sent_before = len(proxy.requests)
    proxy.set_fault("error", status=500)
    for _ in range(FAIL_MAX):
        assert checkout(client, GOOD_CARD).status_code == 503
    assert len(proxy.requests) == sent_before + FAIL_MAX


def test_breaker_opens_after_repeated_failures_and_fails_fast_while_open(
    breaker, checkout, customer_client, anonymous_client
):
    assert breaker_state(anonymous_client) == "closed"

    open_the_breaker(breaker, checkout, customer_client)

    assert breaker_state(anonymous_client) == "open"
    started = time.monotonic()
    response = checkout(customer_client, GOOD_CARD, key="while-open")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json()["code"] == "payment_provider_unavailable"
    assert response["Retry-After"] == str(RESET_SECONDS)
    assert elapsed < FAIL_FAST_SECONDS
    # Nothing left the service.
    assert len(breaker.requests) == FAIL_MAX
    order = Order.objects.get(pk=response.json()["order_id"])
    assert order.status == "payment_failed"
    assert stock_held(order.pk)
    # Never sent, so definitely not authorized: the next attempt is a new one.
    payment = Payment.objects.get(order=order)
    assert payment.status == "failed"
    assert payment.operations.get().status == PaymentOperation.Status.FAILED


def test_after_the_reset_timeout_a_successful_probe_closes_the_breaker(
    breaker, checkout, customer_client, anonymous_client, fake_stripe
):
    open_the_breaker(breaker, checkout, customer_client)
    failed_fast = checkout(customer_client, GOOD_CARD, key="resume-me")
    assert failed_fast.status_code == 503
    breaker.clear()

    time.sleep(RESET_SECONDS + 0.1)
    probe = checkout(customer_client, GOOD_CARD, key="resume-me")

    assert probe.status_code == 201, probe.json()
    assert probe.json()["id"] == failed_fast.json()["order_id"]
    assert probe.json()["status"] == "confirmed"
    assert breaker_state(anonymous_client) == "closed"
    assert len(breaker.sent(AUTHORIZE_PATH)) == 1
    assert_provider_consistent(fake_stripe, probe.json()["id"])
    # Closed: the next checkout goes straight through.
    assert checkout(customer_client, GOOD_CARD).status_code == 201


def test_a_failed_probe_opens_the_breaker_again(
    breaker, checkout, customer_client, anonymous_client
):
    open_the_breaker(breaker, checkout, customer_client)

    time.sleep(RESET_SECONDS + 0.1)
    probe = checkout(customer_client, GOOD_CARD)

    assert probe.status_code == 503
    assert len(breaker.requests) == FAIL_MAX + 1
    assert breaker_state(anonymous_client) == "open"
    assert checkout(customer_client, GOOD_CARD).status_code == 503
    assert len(breaker.requests) == FAIL_MAX + 1


def test_declines_do_not_open_the_breaker(breaker, checkout, customer_client, anonymous_client):
    for _ in range(FAIL_MAX + 1):
        assert checkout(customer_client, "pm_card_chargeCustomerFail").status_code == 402

    assert breaker_state(anonymous_client) == "closed"
    assert checkout(customer_client, GOOD_CARD).status_code == 201


def test_ship_and_refund_fail_fast_while_open_and_work_after(
    breaker, checkout, customer_client, staff_client, fake_stripe
):
    # Given a confirmed order, then the provider goes down and the breaker opens
    confirmed = checkout(customer_client, GOOD_CARD)
    order_id = confirmed.json()["id"]
    open_the_breaker(breaker, checkout, customer_client)
    sent_before = len(breaker.requests)

    # When staff ship while it is open
    shipped = order_action(staff_client, order_id, "ship", key="ship-while-open")

    # Then nothing is sent and the order waits, confirmed
    assert shipped.status_code == 503
    assert len(breaker.requests) == sent_before
    assert Order.objects.get(pk=order_id).status == "confirmed"

    # And once the provider is back, the same request ships it
    breaker.clear()
    time.sleep(RESET_SECONDS + 0.1)
    shipped = order_action(staff_client, order_id, "ship", key="ship-while-open")
    assert shipped.status_code == 200, shipped.json()
    assert shipped.json()["status"] == "shipped"
    assert len(breaker.sent(CAPTURE_PATH)) == 1

    # A refund while the breaker is open again is not sent, and its retry refunds once
    open_the_breaker(breaker, checkout, customer_client)
    refused = order_action(staff_client, order_id, "refund", {"amount": 1000}, key="refund-1")
    assert refused.status_code == 503
    assert breaker.sent(REFUND_PATH) == []
    breaker.clear()
    time.sleep(RESET_SECONDS + 0.1)

    refunded = order_action(staff_client, order_id, "refund", {"amount": 1000}, key="refund-1")

    assert refunded.status_code == 200, refunded.json()
    assert refunded.json()["payment"]["amount_refunded"] == 1000
    assert len(breaker.sent(REFUND_PATH)) == 1
    totals = assert_provider_consistent(fake_stripe, order_id)
    assert (totals["captured"], totals["refunded"]) == (PRICE, 1000)
