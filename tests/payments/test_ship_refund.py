"""Capture at shipment, refunds and cancellation over HTTP, checked at the provider."""

from typing import Any

import pytest

from inventory.models import Reservation
from orders.models import Order
from payments.models import Payment, PaymentOperation
from tests.conftest import run_concurrently, token_client
from tests.factories import StaffFactory
from tests.payments.conftest import (
    CANCEL_PATH,
    CAPTURE_PATH,
    GOOD_CARD,
    PRICE,
    REFUND_PATH,
    ProviderProxy,
    assert_provider_consistent,
    history,
    order_action,
    provider_totals,
    signed_event,
    stock_held,
    webhook_post,
)

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")


def reservation_statuses(order_id: Any) -> set[str]:
    return set(
        Reservation.objects.filter(order_line__order_id=order_id).values_list("status", flat=True)
    )


@pytest.fixture
def confirmed_order_id(provider, checkout, customer_client) -> str:
    response = checkout(customer_client, GOOD_CARD)
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "confirmed"
    order_id: str = response.json()["id"]
    return order_id


@pytest.fixture
def shipped_order_id(confirmed_order_id, staff_client) -> str:
    response = order_action(staff_client, confirmed_order_id, "ship")
    assert response.status_code == 200, response.json()
    return confirmed_order_id


def refund(staff_client: Any, order_id: Any, amount: int | None = None, **kwargs: Any) -> Any:
    return order_action(
        staff_client, order_id, "refund", {} if amount is None else {"amount": amount}, **kwargs
    )


# Shipping: capture exactly once.


@pytest.mark.django_db
def test_ship_captures_the_authorization_once_and_commits_the_stock(
    confirmed_order_id, staff_client, provider, fake_stripe
):
    response = order_action(staff_client, confirmed_order_id, "ship")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "shipped"
    assert body["payment"]["status"] == "captured"
    assert body["payment"]["amount_captured"] == PRICE
    assert reservation_statuses(confirmed_order_id) == {Reservation.Status.COMMITTED}
    assert history(confirmed_order_id)[-2:] == [("route", "routed"), ("ship", "shipped")]
    (capture,) = provider.sent(CAPTURE_PATH)
    assert capture.upstream_status == 200
    totals = assert_provider_consistent(fake_stripe, confirmed_order_id)
    assert (totals["captures"], totals["captured"]) == (1, PRICE)

    # Shipping again is refused and never reaches the provider.
    again = order_action(staff_client, confirmed_order_id, "ship")

    assert again.status_code == 409
    assert again.json()["code"] == "invalid_transition"
    assert len(provider.sent(CAPTURE_PATH)) == 1


@pytest.mark.django_db
def test_customers_cannot_ship_or_refund(confirmed_order_id, customer_client, provider):
    assert order_action(customer_client, confirmed_order_id, "ship").status_code == 403
    assert refund(customer_client, confirmed_order_id).status_code == 403
    assert provider.sent(CAPTURE_PATH) == []


@pytest.mark.django_db
def test_staff_ship_transition_captures_too(confirmed_order_id, staff_client, fake_stripe):
    response = staff_client.post(
        f"/api/v1/orders/{confirmed_order_id}/transitions/",
        {"transition": "ship"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="ship-by-transition",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["payment"]["status"] == "captured"
    assert provider_totals(fake_stripe, confirmed_order_id)["captures"] == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_double_ship_captures_once(
    confirmed_order_id, staff, provider: ProviderProxy, fake_stripe
):
    # Two members of staff press "ship" at the same moment, each with their own key.
    other_staff = StaffFactory()
    clients = [token_client(staff), token_client(other_staff)]

    responses = run_concurrently(
        [lambda c=client: order_action(c, confirmed_order_id, "ship") for client in clients],
        timeout=30,
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 409], [response.json() for response in responses]
    refused = next(response for response in responses if response.status_code == 409)
    assert refused.json()["code"] in ("invalid_transition", "payment_operation_in_progress")
    assert len(provider.sent(CAPTURE_PATH)) == 1
    assert Order.objects.get(pk=confirmed_order_id).status == "shipped"
    assert [t for t, _ in history(confirmed_order_id)].count("ship") == 1
    totals = assert_provider_consistent(fake_stripe, confirmed_order_id)
    assert totals["captures"] == 1


CAPTURE_FAULTS = {
    "server-error": {"kind": "error", "status": 500},
    "response-dropped-after-capture": {"kind": "drop_response", "times": 1},
    "latency-beyond-read-timeout": {"kind": "latency", "seconds": 1.5, "times": 1},
}


@pytest.mark.django_db
@pytest.mark.parametrize("fault", CAPTURE_FAULTS.values(), ids=CAPTURE_FAULTS.keys())
def test_capture_fault_answers_503_and_a_retry_captures_once(
    confirmed_order_id, staff_client, provider: ProviderProxy, fake_stripe, settings, fault
):
    options = dict(fault)
    provider.set_fault(options.pop("kind"), path=CAPTURE_PATH, **options)
    read_timeout = settings.STRIPE_READ_TIMEOUT_SECONDS
    settings.STRIPE_READ_TIMEOUT_SECONDS = 0.5

    failed = order_action(staff_client, confirmed_order_id, "ship", key="ship-1")
    settings.STRIPE_READ_TIMEOUT_SECONDS = read_timeout

    assert failed.status_code == 503, failed.json()
    assert failed.json()["code"] == "payment_provider_unavailable"
    assert "Retry-After" in failed.headers
    assert Order.objects.get(pk=confirmed_order_id).status == "confirmed"
    assert stock_held(confirmed_order_id)
    capture = PaymentOperation.objects.get(payment__order_id=confirmed_order_id, kind="capture")
    assert capture.status == PaymentOperation.Status.UNKNOWN

    provider.clear()
    provider.wait_idle(10)
    retried = order_action(staff_client, confirmed_order_id, "ship", key="ship-1")

    assert retried.status_code == 200, retried.json()
    assert retried.json()["status"] == "shipped"
    assert retried.json()["payment"]["amount_captured"] == PRICE
    # Every attempt carried the same idempotency key: the provider captured once.
    assert {r.idempotency_key for r in provider.requests if "/capture" in r.path} == {
        capture.idempotency_key
    }
    totals = assert_provider_consistent(fake_stripe, confirmed_order_id)
    assert (totals["captures"], totals["captured"]) == (1, PRICE)
    assert reservation_statuses(confirmed_order_id) == {Reservation.Status.COMMITTED}


@pytest.mark.django_db
def test_reconciler_finishes_a_capture_whose_answer_was_lost(
    confirmed_order_id, staff_client, provider: ProviderProxy, fake_stripe
):
    from flows.reconcile import payments_reconcile

    provider.set_fault("drop_response", times=1, path=CAPTURE_PATH)
    assert order_action(staff_client, confirmed_order_id, "ship").status_code == 503

    report = payments_reconcile()

    assert report.errors == []
    assert Order.objects.get(pk=confirmed_order_id).status == "shipped"
    payment = Payment.objects.get(order_id=confirmed_order_id)
    assert (payment.status, payment.amount_captured) == ("captured", PRICE)
    assert len(provider.sent(CAPTURE_PATH)) == 1
    assert_provider_consistent(fake_stripe, confirmed_order_id)


# Refunds: partial, many, never beyond the capture.


@pytest.mark.django_db
def test_partial_refunds_add_up_and_never_exceed_the_capture(
    shipped_order_id, staff_client, fake_stripe
):
    first = refund(staff_client, shipped_order_id, 500)

    assert first.status_code == 200, first.json()
    assert first.json()["status"] == "shipped"
    assert first.json()["payment"]["amount_refunded"] == 500

    second = refund(staff_client, shipped_order_id, 700)
    assert second.status_code == 200
    assert second.json()["payment"]["amount_refunded"] == 1200

    too_much = refund(staff_client, shipped_order_id, PRICE - 1200 + 1)

    assert too_much.status_code == 409
    problem = too_much.json()
    assert problem["code"] == "refund_exceeds_captured"
    assert (problem["captured"], problem["refunded"], problem["refundable"]) == (
        PRICE,
        1200,
        PRICE - 1200,
    )
    assert provider_totals(fake_stripe, shipped_order_id)["refunded"] == 1200

    rest = refund(staff_client, shipped_order_id, PRICE - 1200)

    assert rest.status_code == 200
    assert rest.json()["status"] == "refunded"
    assert rest.json()["payment"]["amount_refunded"] == PRICE
    totals = assert_provider_consistent(fake_stripe, shipped_order_id)
    assert (totals["captured"], totals["refunded"]) == (PRICE, PRICE)
    assert history(shipped_order_id)[-1] == ("refund", "refunded")


@pytest.mark.django_db
def test_many_small_refunds_stop_at_the_captured_amount(
    shipped_order_id, staff_client, fake_stripe
):
    answers = [refund(staff_client, shipped_order_id, 300).status_code for _ in range(9)]

    # 8 x 300 = 2400 fits in 2500; the ninth would not.
    assert answers == [200] * 8 + [409]
    last = refund(staff_client, shipped_order_id, 100)
    assert last.status_code == 200
    assert last.json()["status"] == "refunded"
    assert refund(staff_client, shipped_order_id, 1).status_code == 409
    totals = assert_provider_consistent(fake_stripe, shipped_order_id)
    assert totals["refunded"] == PRICE
    assert totals["refunded"] <= totals["captured"]


@pytest.mark.django_db
def test_refund_above_the_capture_is_refused_before_the_provider(
    shipped_order_id, staff_client, provider: ProviderProxy
):
    response = refund(staff_client, shipped_order_id, PRICE + 1)

    assert response.status_code == 409
    assert response.json()["code"] == "refund_exceeds_captured"
    assert provider.sent(REFUND_PATH) == []


@pytest.mark.django_db
def test_refund_before_shipping_is_refused(confirmed_order_id, staff_client, provider):
    response = refund(staff_client, confirmed_order_id, 100)

    assert response.status_code == 409
    assert provider.sent(REFUND_PATH) == []


@pytest.mark.django_db
def test_full_refund_refunds_everything_and_marks_the_order_refunded(
    shipped_order_id, staff_client, fake_stripe
):
    response = refund(staff_client, shipped_order_id)

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "refunded"
    assert response.json()["payment"]["amount_refunded"] == PRICE
    totals = assert_provider_consistent(fake_stripe, shipped_order_id)
    assert totals["refunded"] == PRICE


@pytest.mark.django_db
def test_refund_fault_then_retry_with_the_same_key_refunds_once(
    shipped_order_id, staff_client, provider: ProviderProxy, fake_stripe
):
    provider.set_fault("drop_response", times=1, path=REFUND_PATH)

    failed = refund(staff_client, shipped_order_id, 1000, key="refund-1")

    assert failed.status_code == 503
    provider.clear()
    retried = refund(staff_client, shipped_order_id, 1000, key="refund-1")

    assert retried.status_code == 200, retried.json()
    assert retried.json()["payment"]["amount_refunded"] == 1000
    totals = assert_provider_consistent(fake_stripe, shipped_order_id)
    assert totals["refunded"] == 1000
    (operation,) = PaymentOperation.objects.filter(
        payment__order_id=shipped_order_id, kind="refund"
    )
    assert operation.status == PaymentOperation.Status.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_never_refund_more_than_was_captured(
    shipped_order_id, staff, provider: ProviderProxy, fake_stripe
):
    clients = [token_client(staff) for _ in range(3)]

    responses = run_concurrently(
        [lambda c=client: refund(c, shipped_order_id, 1000) for client in clients], timeout=30
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 200, 409], [response.json() for response in responses]
    assert len(provider.sent(REFUND_PATH)) == 2
    totals = assert_provider_consistent(fake_stripe, shipped_order_id)
    assert totals["refunded"] == 2000
    assert Payment.objects.get(order_id=shipped_order_id).amount_refunded == 2000


@pytest.mark.django_db
def test_refund_made_at_the_provider_arrives_by_webhook(
    shipped_order_id, anonymous_client, fake_stripe
):
    # Someone refunds in the Stripe dashboard; Stripe tells us with charge.refunded.
    payment = Payment.objects.get(order_id=shipped_order_id)
    fake_stripe.client().v1.refunds.create(params={"payment_intent": payment.provider_payment_id})
    intent = fake_stripe.client().v1.payment_intents.retrieve(payment.provider_payment_id)
    charge = intent.to_dict()["latest_charge"]
    assert charge["amount_refunded"] == PRICE

    response = webhook_post(anonymous_client, *signed_event("charge.refunded", charge))

    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.amount_refunded == PRICE
    assert Order.objects.get(pk=shipped_order_id).status == "refunded"
    assert_provider_consistent(fake_stripe, shipped_order_id)


# Cancellation: the authorization is released at the provider.


@pytest.mark.django_db
def test_cancelling_a_confirmed_order_voids_its_authorization(
    confirmed_order_id, customer_client, provider: ProviderProxy, fake_stripe
):
    response = order_action(customer_client, confirmed_order_id, "cancel")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    assert response.json()["payment"]["status"] == "voided"
    assert reservation_statuses(confirmed_order_id) == {Reservation.Status.RELEASED}
    (intent,) = fake_stripe.payment_intents(order_id=confirmed_order_id)
    assert intent["status"] == "canceled"
    assert len(provider.sent(CANCEL_PATH)) == 1
    assert_provider_consistent(fake_stripe, confirmed_order_id)


@pytest.mark.django_db(transaction=True)
def test_cancel_voids_once_although_the_outbox_also_voids(
    confirmed_order_id, customer_client, provider: ProviderProxy, fake_stripe
):
    response = order_action(customer_client, confirmed_order_id, "cancel")

    assert response.status_code == 200, response.json()
    assert response.json()["payment"]["status"] == "voided"
    assert len(provider.sent(CANCEL_PATH)) == 1
    (intent,) = fake_stripe.payment_intents(order_id=confirmed_order_id)
    assert intent["status"] == "canceled"


@pytest.mark.django_db
def test_cancel_while_the_provider_is_down_is_voided_by_the_reconciler(
    confirmed_order_id, customer_client, provider: ProviderProxy, fake_stripe
):
    from flows.reconcile import payments_reconcile

    provider.set_fault("error", status=500, path=CANCEL_PATH)

    response = order_action(customer_client, confirmed_order_id, "cancel")

    # The order is cancelled either way; the money is released later.
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    (intent,) = fake_stripe.payment_intents(order_id=confirmed_order_id)
    assert intent["status"] == "requires_capture"

    provider.clear()
    payments_reconcile()

    (intent,) = fake_stripe.payment_intents(order_id=confirmed_order_id)
    assert intent["status"] == "canceled"
    assert Payment.objects.get(order_id=confirmed_order_id).status == "voided"
    assert_provider_consistent(fake_stripe, confirmed_order_id)


@pytest.mark.django_db
def test_cancelling_a_shipped_order_is_refused_and_keeps_the_capture(
    shipped_order_id, customer_client, provider: ProviderProxy, fake_stripe
):
    response = order_action(customer_client, shipped_order_id, "cancel")

    assert response.status_code == 409
    assert provider.sent(CANCEL_PATH) == []
    assert provider_totals(fake_stripe, shipped_order_id)["captures"] == 1
