"""The reconciler: what requests left open is read back from the provider and settled;
authorizations no order wants are voided."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from flows import ship as capture_service
from flows.expire import orders_expire_overdue
from flows.lock_objects import payment_lock
from flows.payment_outcomes import payment_intent_apply_locked
from flows.reconcile import payments_reconcile
from flows.route import held_lines_by_warehouse, order_route_manual
from flows.ship import order_ship, order_ship_when_shipments_left
from flows.warehouse_reports import shipment_report_apply
from fulfilment.gateways.base import Accepted
from fulfilment.models import FulfilmentRequest, Shipment
from fulfilment.services import fulfilment_request_accept_locked
from orders.models import Order, OrderEvent
from payments.errors import PaymentProviderUnavailable
from payments.gateways.stripe import intent_from_object
from payments.models import Payment, PaymentOperation
from tests.conftest import run_concurrently
from tests.payments.conftest import (
    AUTHORIZE_PATH,
    CANCEL_PATH,
    CAPTURE_PATH,
    GOOD_CARD,
    PRICE,
    REFUND_PATH,
    THREE_D_SECURE_CARD,
    ProviderProxy,
    assert_provider_consistent,
    fake_post,
    history,
    order_action,
    stock_held,
)

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")


def checkout_with_lost_answer(provider: ProviderProxy, checkout: Any, client: Any) -> Order:
    """A checkout whose authorization the provider carried out, but whose answer was
    lost: the customer got a 503, the provider holds a dark authorization."""
    provider.set_fault("drop_response", times=1, path=AUTHORIZE_PATH)
    response = checkout(client, GOOD_CARD)
    assert response.status_code == 503, response.json()
    return Order.objects.get(pk=response.json()["order_id"])


def intent_statuses(fake_stripe: Any, order: Order) -> list[str]:
    return [intent["status"] for intent in fake_stripe.payment_intents(order_id=str(order.pk))]


@pytest.mark.django_db
def test_operations_younger_than_the_grace_period_are_left_alone(
    provider, checkout, customer_client, fake_stripe, settings
):
    order = checkout_with_lost_answer(provider, checkout, customer_client)
    settings.PAYMENT_RECONCILE_GRACE_SECONDS = 60

    report = payments_reconcile()

    assert (report.resolved, report.voided) == (0, 0)
    assert intent_statuses(fake_stripe, order) == ["requires_capture"]
    assert Payment.objects.get(order=order).operations.get().status == "unknown"

    # Past the grace period it is settled.
    payments_reconcile(now=timezone.now() + timedelta(seconds=61))

    assert intent_statuses(fake_stripe, order) == ["canceled"]


@pytest.mark.django_db
def test_dark_authorization_of_a_cancelled_order_is_voided(
    provider, checkout, customer_client, fake_stripe
):
    order = checkout_with_lost_answer(provider, checkout, customer_client)
    cancelled = order_action(customer_client, order.pk, "cancel")
    assert cancelled.status_code == 200, cancelled.json()

    payments_reconcile()

    order.refresh_from_db()
    assert order.status == "cancelled"
    assert intent_statuses(fake_stripe, order) == ["canceled"]
    assert Payment.objects.get(order=order).status == "voided"
    assert_provider_consistent(fake_stripe, order.pk)


@pytest.mark.django_db
def test_dark_authorization_of_an_expired_order_is_voided(
    provider, checkout, customer_client, fake_stripe
):
    order = checkout_with_lost_answer(provider, checkout, customer_client)
    Order.objects.filter(pk=order.pk).update(reservation_expires_at=timezone.now())
    assert orders_expire_overdue() == 1

    payments_reconcile()

    order.refresh_from_db()
    assert order.status == "expired"
    assert not stock_held(order.pk)
    assert intent_statuses(fake_stripe, order) == ["canceled"]
    assert_provider_consistent(fake_stripe, order.pk)


@pytest.mark.django_db
def test_while_the_provider_is_still_down_the_attempt_stays_open(
    provider, checkout, customer_client, fake_stripe
):
    order = checkout_with_lost_answer(provider, checkout, customer_client)
    provider.set_fault("error", status=500)

    report = payments_reconcile()

    assert report.still_unknown == 1
    assert report.errors == []
    assert Payment.objects.get(order=order).operations.get().status == "unknown"

    provider.clear()
    report = payments_reconcile()

    assert report.still_unknown == 0
    assert intent_statuses(fake_stripe, order) == ["canceled"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_reconcilers_void_once(provider, checkout, customer_client, fake_stripe):
    order = checkout_with_lost_answer(provider, checkout, customer_client)

    reports = run_concurrently([payments_reconcile, payments_reconcile], timeout=30)

    assert all(report.errors == [] for report in reports), reports
    assert intent_statuses(fake_stripe, order) == ["canceled"]
    cancels = [r for r in provider.requests if r.method == "POST" and "/cancel" in r.path]
    # At most one void operation, so one idempotency key, however often it was sent.
    assert len({request.idempotency_key for request in cancels}) == 1
    assert PaymentOperation.objects.filter(payment__order=order, kind="void").count() == 1
    assert_provider_consistent(fake_stripe, order.pk)


@pytest.mark.django_db
def test_three_d_secure_finished_without_a_webhook_is_confirmed(
    provider, checkout, customer_client, fake_stripe
):
    # The customer authenticated, but Stripe's webhook never arrived.
    response = checkout(customer_client, fake_stripe.create_card(THREE_D_SECURE_CARD))
    assert response.json()["payment"]["status"] == "requires_action"
    (intent,) = fake_stripe.payment_intents(order_id=response.json()["id"])
    fake_post(
        fake_stripe,
        f"/v1/payment_intents/{intent['id']}/_authenticate",
        {"client_secret": intent["client_secret"], "success": "true"},
    )

    payments_reconcile()

    order = Order.objects.get(pk=response.json()["id"])
    assert order.status == "confirmed"
    assert Payment.objects.get(order=order).status == "authorized"
    assert history(order.pk) == [("place", "pending_payment"), ("confirm", "confirmed")]
    assert_provider_consistent(fake_stripe, order.pk)


@pytest.mark.django_db
def test_abandoned_three_d_secure_is_voided_when_the_order_expires(
    provider, checkout, customer_client, fake_stripe
):
    response = checkout(customer_client, fake_stripe.create_card(THREE_D_SECURE_CARD))
    order = Order.objects.get(pk=response.json()["id"])
    Order.objects.filter(pk=order.pk).update(reservation_expires_at=timezone.now())

    orders_expire_overdue()

    order.refresh_from_db()
    assert order.status == "expired"
    assert intent_statuses(fake_stripe, order) == ["canceled"]
    assert Payment.objects.get(order=order).status == "voided"
    assert len(provider.sent(CANCEL_PATH)) == 1


@pytest.mark.django_db
def test_refund_whose_answer_was_lost_is_settled_once(
    provider, checkout, customer_client, staff_client, fake_stripe
):
    order_id = checkout(customer_client, GOOD_CARD).json()["id"]
    assert order_action(staff_client, order_id, "ship").status_code == 200
    provider.set_fault("drop_response", times=1, path=REFUND_PATH)
    assert order_action(staff_client, order_id, "refund", {"amount": 900}).status_code == 503

    payments_reconcile()

    payment = Payment.objects.get(order_id=order_id)
    assert payment.amount_refunded == 900
    assert len(provider.sent(REFUND_PATH)) == 1
    totals = assert_provider_consistent(fake_stripe, order_id)
    assert (totals["captured"], totals["refunded"]) == (PRICE, 900)


@pytest.mark.django_db
@pytest.mark.parametrize("reached_provider", [False, True], ids=["before-send", "after-send"])
def test_capture_left_pending_by_a_dead_process_is_finished(
    provider, checkout, customer_client, staff_client, fake_stripe, monkeypatch, reached_provider
):
    # Given a process died in the middle of a capture, leaving the operation pending
    order_id = checkout(customer_client, GOOD_CARD).json()["id"]
    send = capture_service.operation_send

    def die(operation, call):
        if reached_provider:
            send(operation, call)
        raise RuntimeError("worker killed")

    monkeypatch.setattr(capture_service, "operation_send", die)
    with pytest.raises(RuntimeError):
        order_ship(order_id=order_id, actor=Actor.system())
    monkeypatch.undo()
    capture = PaymentOperation.objects.get(payment__order_id=order_id, kind="capture")
    assert capture.status == PaymentOperation.Status.PENDING

    # When the reconciler runs after the grace period
    report = payments_reconcile()

    # Then the order is shipped with exactly one capture
    assert report.errors == []
    assert Order.objects.get(pk=order_id).status == "shipped"
    capture.refresh_from_db()
    assert capture.status == PaymentOperation.Status.SUCCEEDED
    assert len(provider.sent(CAPTURE_PATH)) == 1
    totals = assert_provider_consistent(fake_stripe, order_id)
    assert (totals["captures"], totals["captured"]) == (1, PRICE)


def routed_with_a_shipment(order_id: Any) -> Shipment:
    """Route the order to its warehouse by hand, with an accepted request and shipment
    (what the routing worker records when the warehouse accepts)."""
    order = Order.objects.get(pk=order_id)
    ((warehouse_id, lines),) = held_lines_by_warehouse(order).items()
    request = FulfilmentRequest.objects.create(order=order, warehouse_id=warehouse_id, lines=lines)
    shipment = fulfilment_request_accept_locked(request.pk, Accepted(shipment_reference="shp-r1"))
    assert shipment is not None
    order_route_manual(order_id=order_id, actor=Actor.system())
    return Shipment.objects.select_related("warehouse").get(pk=shipment.pk)


def report_shipped(shipment: Shipment, event_id: str, lines: dict[str, int] | None) -> None:
    shipment_report_apply(
        warehouse=shipment.warehouse,
        event="shipped",
        reference=shipment.reference,
        carrier="DHL",
        tracking_number="JJD1",
        event_id=event_id,
        lines=lines,
    )


@pytest.mark.django_db
def test_a_lost_capture_of_a_part_is_recorded_from_the_provider_not_sent_again(
    provider, checkout, customer_client, fake_stripe, product
):
    # Given 3 units, 1 reported shipped, whose capture the provider made but whose
    # answer was lost
    order_id = checkout(customer_client, GOOD_CARD, quantity=3).json()["id"]
    shipment = routed_with_a_shipment(order_id)
    report_shipped(shipment, "evt-part", {product.sku: 1})
    provider.set_fault("drop_response", times=1, path=CAPTURE_PATH)
    with pytest.raises(PaymentProviderUnavailable):
        order_ship_when_shipments_left(order_id=order_id, actor=Actor.system())
    (capture,) = PaymentOperation.objects.filter(payment__order_id=order_id, kind="capture")
    assert (capture.status, capture.amount, capture.final) == ("unknown", PRICE, False)

    # When the reconciler runs
    report = payments_reconcile()

    # Then it reads the capture back from the intent (received covers it) and records
    # it once, without sending it again; the rest of the authorization stays
    assert report.errors == []
    capture.refresh_from_db()
    assert capture.status == PaymentOperation.Status.SUCCEEDED
    assert len(provider.sent(CAPTURE_PATH)) == 1
    payment = Payment.objects.get(order_id=order_id)
    assert (payment.status, payment.amount_captured) == ("authorized", PRICE)
    assert Order.objects.get(pk=order_id).status == "partially_shipped"

    # And when the rest ships, the final capture takes exactly the rest
    report_shipped(shipment, "evt-rest", None)
    order_ship_when_shipments_left(order_id=order_id, actor=Actor.system())
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == ("captured", 3 * PRICE)
    assert len(provider.sent(CAPTURE_PATH)) == 2
    (intent,) = fake_stripe.payment_intents(order_id=str(order_id))
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 3 * PRICE)
    assert Order.objects.get(pk=order_id).status == "shipped"
    assert payments_reconcile().errors == []
    assert len(provider.sent(CAPTURE_PATH)) == 2


@pytest.mark.django_db
def test_a_webhook_for_the_final_capture_racing_its_own_record_counts_it_once(
    provider, checkout, customer_client, fake_stripe, product
):
    # Given 2 units shipped one at a time, the first captured
    order_id = checkout(customer_client, GOOD_CARD, quantity=2).json()["id"]
    shipment = routed_with_a_shipment(order_id)
    report_shipped(shipment, "evt-1", {product.sku: 1})
    order_ship_when_shipments_left(order_id=order_id, actor=Actor.system())
    report_shipped(shipment, "evt-2", None)
    # and the final capture's answer lost, so the provider's state arrives first
    provider.set_fault("drop_response", times=1, path=CAPTURE_PATH)
    with pytest.raises(PaymentProviderUnavailable):
        order_ship_when_shipments_left(order_id=order_id, actor=Actor.system())
    (intent,) = fake_stripe.payment_intents(order_id=str(order_id))
    assert intent["status"] == "succeeded"

    # When the provider's succeeded intent is applied (the webhook's path), then the
    # reconciler and a retry of the worker run too
    payment = Payment.objects.get(order_id=order_id)
    with transaction.atomic():
        locked = payment_lock(payment_id=payment.pk)
        payment_intent_apply_locked(
            order=locked.order,
            payment=locked.payment,
            intent=intent_from_object(intent),
            actor=Actor.system(),
        )
    payments_reconcile()
    order_ship_when_shipments_left(order_id=order_id, actor=Actor.system())

    # Then the two captures count once each: all of it, shipped
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == ("captured", 2 * PRICE)
    assert list(
        PaymentOperation.objects.filter(payment=payment, kind="capture").values_list(
            "status", "final"
        )
    ) == [("succeeded", False), ("succeeded", True)]
    assert len(provider.sent(CAPTURE_PATH)) == 2
    assert Order.objects.get(pk=order_id).status == "shipped"
    assert OrderEvent.objects.filter(order_id=order_id, type="payment.captured").count() == 2


@pytest.mark.django_db
def test_staff_ship_takes_all_the_reports_owe_in_one_final_capture(
    provider, checkout, customer_client, fake_stripe, product
):
    # Given 3 units reported shipped one at a time, none captured yet (no worker ran)
    order_id = checkout(customer_client, GOOD_CARD, quantity=3).json()["id"]
    shipment = routed_with_a_shipment(order_id)
    report_shipped(shipment, "evt-1", {product.sku: 1})
    report_shipped(shipment, "evt-2", {product.sku: 1})
    report_shipped(shipment, "evt-3", None)

    # When staff ship it
    order_ship(order_id=order_id, actor=Actor.system(), reason="by hand")

    # Then one final capture took all of it (a card without multicapture ships too)
    (capture,) = PaymentOperation.objects.filter(payment__order_id=order_id, kind="capture")
    assert (capture.amount, capture.final, capture.status) == (3 * PRICE, True, "succeeded")
    assert capture.reference.startswith(f"shipment-{shipment.pk}-report-")
    assert len(provider.sent(CAPTURE_PATH)) == 1
    assert Order.objects.get(pk=order_id).status == "shipped"
    assert Payment.objects.get(order_id=order_id).amount_captured == 3 * PRICE
