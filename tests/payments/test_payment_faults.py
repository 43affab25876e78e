"""Checkout while the network to the provider misbehaves, and recovery afterwards.

Each fault is put between the service and the fake Stripe server. Whatever happens, the
customer gets a quick 503 with Retry-After, the order stays payment_failed with its stock
held, a retry never makes a second order, and once the fault is gone the provider holds
at most one live authorization per order (a dark one is voided by the reconciler).
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import call_command

from flows.reconcile import payments_reconcile
from orders.models import Order
from payments.models import Payment, PaymentOperation
from tests.payments.conftest import (
    AUTHORIZE_PATH,
    GOOD_CARD,
    ProviderProxy,
    assert_provider_consistent,
    history,
    order_action,
    stock_held,
)

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")

pytestmark = pytest.mark.django_db

READ_TIMEOUT = 0.5
# A 503 must come back about as fast as the read timeout allows, never hang.
FAST_ENOUGH_SECONDS = READ_TIMEOUT + 1.5


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[ProviderProxy], None]
    # The provider carried the authorization out although the service never heard.
    provider_acts: bool


FAULTS = [
    Fault(
        "latency-beyond-read-timeout",
        lambda proxy: proxy.set_fault(
            "latency", seconds=READ_TIMEOUT + 1.0, times=1, path=AUTHORIZE_PATH
        ),
        provider_acts=True,
    ),
    Fault(
        "server-error",
        lambda proxy: proxy.set_fault("error", status=500, path=AUTHORIZE_PATH),
        provider_acts=False,
    ),
    Fault("connection-refused", lambda proxy: proxy.set_fault("refuse"), provider_acts=False),
    Fault(
        "connection-dropped",
        lambda proxy: proxy.set_fault("drop", path=AUTHORIZE_PATH),
        provider_acts=False,
    ),
    Fault(
        "response-dropped-after-charge",
        lambda proxy: proxy.set_fault("drop_response", times=1, path=AUTHORIZE_PATH),
        provider_acts=True,
    ),
]


@pytest.fixture(params=FAULTS, ids=[fault.name for fault in FAULTS])
def fault(request: pytest.FixtureRequest) -> Fault:
    chosen: Fault = request.param
    return chosen


@contextmanager
def short_timeouts(settings: Any) -> Iterator[None]:
    """Short provider timeouts for the faulty call only; the recovery gets the usual."""
    before = settings.STRIPE_READ_TIMEOUT_SECONDS, settings.STRIPE_CONNECT_TIMEOUT_SECONDS
    settings.STRIPE_READ_TIMEOUT_SECONDS = settings.STRIPE_CONNECT_TIMEOUT_SECONDS = READ_TIMEOUT
    try:
        yield
    finally:
        settings.STRIPE_READ_TIMEOUT_SECONDS, settings.STRIPE_CONNECT_TIMEOUT_SECONDS = before


def checkout_under(
    fault: Fault, provider: ProviderProxy, checkout: Any, client: Any, key: str, settings: Any
) -> tuple[Any, float]:
    """Check out while the fault is on; return the response and how long it took. The
    fault is cleared and the proxy drained afterwards (a delayed request lands)."""
    fault.inject(provider)
    with short_timeouts(settings):
        started = time.monotonic()
        response = checkout(client, GOOD_CARD, key=key)
        elapsed = time.monotonic() - started
    provider.clear()
    provider.wait_idle(10)
    return response, elapsed


def assert_unavailable_and_consistent(response: Any, elapsed: float) -> Order:
    assert response.status_code == 503, response.json()
    assert response.json()["code"] == "payment_provider_unavailable"
    assert int(response["Retry-After"]) >= 1
    assert elapsed < FAST_ENOUGH_SECONDS
    order = Order.objects.get(pk=response.json()["order_id"])
    assert order.status == "payment_failed"
    assert stock_held(order.pk)
    payment = Payment.objects.get(order=order)
    assert payment.status == "pending"
    # Maybe sent: left for a retry with the same key, or for the reconciler.
    (authorize,) = payment.operations.all()
    assert authorize.status == PaymentOperation.Status.UNKNOWN
    return order


def test_retrying_the_same_key_resumes_the_order_and_authorizes_once(
    fault, provider, checkout, customer_client, fake_stripe, settings
):
    response, elapsed = checkout_under(
        fault, provider, checkout, customer_client, "fault-1", settings
    )
    order = assert_unavailable_and_consistent(response, elapsed)
    key_sent = Payment.objects.get(order=order).operations.get().idempotency_key

    retried = checkout(customer_client, GOOD_CARD, key="fault-1")

    assert retried.status_code == 201, retried.json()
    assert retried.json()["id"] == str(order.pk)
    assert retried.json()["status"] == "confirmed"
    assert Order.objects.count() == 1
    # The retry re-sent the same operation, under the same provider idempotency key.
    authorizations = provider.sent(AUTHORIZE_PATH)
    assert {request.idempotency_key for request in authorizations} == {key_sent}
    assert Payment.objects.filter(order=order).count() == 1
    totals = assert_provider_consistent(fake_stripe, order.pk)
    assert (totals["intents"], totals["authorized"]) == (1, 1)
    assert history(order.pk) == [
        ("place", "pending_payment"),
        ("fail_payment", "payment_failed"),
        ("retry_payment", "pending_payment"),
        ("confirm", "confirmed"),
    ]
    replay = checkout(customer_client, GOOD_CARD, key="fault-1")
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1


def test_paying_again_resends_the_open_attempt_instead_of_a_second_charge(
    fault, provider, checkout, customer_client, fake_stripe, settings
):
    response, elapsed = checkout_under(
        fault, provider, checkout, customer_client, "fault-2", settings
    )
    order = assert_unavailable_and_consistent(response, elapsed)

    paid = order_action(customer_client, order.pk, "pay", {"payment_method": GOOD_CARD})

    assert paid.status_code == 200, paid.json()
    assert paid.json()["status"] == "confirmed"
    assert Order.objects.count() == 1
    totals = assert_provider_consistent(fake_stripe, order.pk)
    assert (totals["intents"], totals["authorized"]) == (1, 1)


def test_reconciler_settles_the_attempt_and_voids_a_dark_authorization(
    fault, provider, checkout, customer_client, fake_stripe, settings
):
    response, elapsed = checkout_under(
        fault, provider, checkout, customer_client, "fault-3", settings
    )
    order = assert_unavailable_and_consistent(response, elapsed)

    call_command("reconcile_payments", stdout=None)

    order.refresh_from_db()
    assert order.status == "payment_failed"
    assert stock_held(order.pk)
    payment = Payment.objects.get(order=order)
    intents = fake_stripe.payment_intents(order_id=str(order.pk))
    if fault.provider_acts:
        # The provider authorized, the order never took it: released, not kept.
        (intent,) = intents
        assert intent["status"] == "canceled"
        assert payment.status == "voided"
        assert payment.provider_payment_id == intent["id"]
    else:
        assert intents == []
        assert payment.status == "failed"
    assert not payment.operations.filter(status__in=["pending", "unknown"]).exists()
    assert_provider_consistent(fake_stripe, order.pk)

    # A second pass finds nothing left to do.
    report = payments_reconcile()
    assert (report.resolved, report.voided, report.errors) == (0, 0, [])

    # The customer retries the checkout: a new attempt, one live authorization.
    retried = checkout(customer_client, GOOD_CARD, key="fault-3")

    assert retried.status_code == 201, retried.json()
    assert retried.json()["id"] == str(order.pk)
    assert retried.json()["status"] == "confirmed"
    assert Order.objects.count() == 1
    totals = assert_provider_consistent(fake_stripe, order.pk)
    assert totals["authorized"] == 1
    assert totals["canceled"] == (1 if fault.provider_acts else 0)


def test_retry_while_the_first_attempt_is_still_at_the_provider_charges_once(
    provider, checkout, customer_client, fake_stripe, settings
):
    # Given a checkout that timed out while the provider was still working on it
    provider.set_fault("latency", seconds=READ_TIMEOUT * 3, times=1, path=AUTHORIZE_PATH)
    with short_timeouts(settings):
        first = checkout(customer_client, GOOD_CARD, key="impatient")
    assert first.status_code == 503

    # When the customer retries at once, before the provider finished
    early = checkout(customer_client, GOOD_CARD, key="impatient")

    # Then the provider refuses the concurrent use of the key: still unavailable
    assert early.status_code == 503, early.json()
    assert early.json()["order_id"] == first.json()["order_id"]

    # And once it finished, the retry picks its result up: one authorization
    provider.wait_idle(10)
    late = checkout(customer_client, GOOD_CARD, key="impatient")

    assert late.status_code == 201, late.json()
    assert late.json()["status"] == "confirmed"
    assert Order.objects.count() == 1
    assert Payment.objects.count() == 1
    authorizations = [r for r in provider.requests if r.path == "/v1/payment_intents"]
    assert len({r.idempotency_key for r in authorizations}) == 1
    assert sum(1 for r in authorizations if r.forwarded) == 1
    totals = assert_provider_consistent(fake_stripe, late.json()["id"])
    assert (totals["intents"], totals["authorized"]) == (1, 1)
