"""A cancel never races a capture: while staff's capture is in flight the cancel is
refused, and money captured on an order that did not ship is refunded by the
reconciler, exactly once."""

from typing import Any

import pytest

from flows.reconcile import payments_reconcile
from orders.models import Order
from payments.models import Payment, PaymentOperation
from tests.payments.conftest import (
    CAPTURE_PATH,
    GOOD_CARD,
    PRICE,
    REFUND_PATH,
    assert_provider_consistent,
    history,
    in_thread,
    order_action,
    provider_totals,
)

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")


@pytest.mark.django_db(transaction=True)
def test_cancel_while_a_capture_is_in_flight_is_refused_and_the_order_ships(
    provider, checkout, customer_client, staff_client, fake_stripe
):
    # Given staff ship a paid order and the provider's answer to the capture is slow
    order_id = checkout(customer_client, GOOD_CARD).json()["id"]
    hold = provider.hold_response(path=CAPTURE_PATH)
    results: dict[str, Any] = {}
    ship = in_thread(lambda: order_action(staff_client, order_id, "ship"), results, "ship")
    assert hold.answered.wait(10)

    # When the customer cancels a moment later, while the capture is in flight
    try:
        cancel = order_action(customer_client, order_id, "cancel", {"reason": "changed mind"})
    finally:
        hold.release.set()
        ship.join(15)

    # Then the cancel is refused, the order ships with its money captured once, and
    # nothing is voided or refunded
    assert cancel.status_code == 409, cancel.json()
    assert cancel.json()["code"] == "payment_operation_in_progress"
    assert results["ship"].status_code == 200, results["ship"].json()
    assert Order.objects.get(pk=order_id).status == "shipped"
    assert ("cancel", "cancelled") not in history(order_id)
    totals = assert_provider_consistent(fake_stripe, order_id)
    assert (totals["captured"], totals["refunded"]) == (PRICE, 0)
    # Retried after the capture, the cancel gets the real answer: too late.
    retried = order_action(customer_client, order_id, "cancel", {"reason": "changed mind"})
    assert retried.status_code == 409
    assert retried.json()["code"] == "invalid_transition"


@pytest.mark.django_db
def test_reconciler_refunds_money_captured_on_an_order_that_did_not_ship(
    provider, checkout, customer_client, staff_client, fake_stripe
):
    # Given money captured at the provider for an order that ends cancelled (a capture
    # made behind oms's back, e.g. in the provider's dashboard)
    order_id = checkout(customer_client, GOOD_CARD).json()["id"]
    assert order_action(staff_client, order_id, "ship").status_code == 200
    Order.objects.filter(pk=order_id).update(status="cancelled")

    # When the reconciler runs, twice
    first = payments_reconcile()
    second = payments_reconcile()

    # Then all of it is refunded, once, and the order stays cancelled
    assert (first.refunded, second.refunded) == (1, 0)
    payment = Payment.objects.get(order_id=order_id)
    assert payment.amount_refunded == payment.amount_captured == PRICE
    assert Order.objects.get(pk=order_id).status == "cancelled"
    assert len(provider.sent(REFUND_PATH)) == 1
    assert PaymentOperation.objects.filter(payment=payment, kind="refund").count() == 1
    totals = provider_totals(fake_stripe, order_id)
    assert (totals["captured"], totals["refunded"]) == (PRICE, PRICE)
