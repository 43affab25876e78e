"""Warehouse faults as a real worker meets them: errors and timeouts are retried with
the same key until the warehouse answers; a rejection moves the stock to another
warehouse, or cancels the order, voids its payment and tells the customer."""

import pytest

from core.models import OutboxMessage
from fulfilment.models import FulfilmentRequest, Shipment
from inventory.models import StockItem
from notifications.models import EmailDelivery
from payments.models import Payment
from tests.conftest import assert_stock_consistent
from tests.support.worker import wait_for
from tests.worker.conftest import (
    GOOD_CARD,
    checkout,
    emails_received,
    fulfilments_by_key,
    held_at,
    history,
    order_status,
    smtp_env,
    staff_transition,
    wait_outbox_settled,
    warehouse_at,
)

pytest_plugins = (
    "tests.support.redis_server",
    "tests.support.worker",
    "tests.support.smtp",
    "tests.support.fake_warehouse",
    "tests.support.fake_stripe",
)

CONFIRMED = EmailDelivery.Kind.ORDER_CONFIRMED


def route_message(order_id: str) -> OutboxMessage:
    return OutboxMessage.objects.get(handler="fulfilment.route_order", payload__order_id=order_id)


@pytest.mark.django_db(transaction=True)
def test_warehouse_answering_500_then_recovering_fulfils_once_and_the_order_ships(
    start_worker,
    payments_at_fake_stripe,
    callbacks_to_live_server,
    fake_warehouses,
    stocked_product,
    customer_client,
    smtp_server,
):
    # Given a warehouse that fails its next two requests with a 500
    fake = fake_warehouses()
    warehouse_at("main", fake)
    product = stocked_product(quantities={"main": 5}, price=2500)
    fake.configure(mode="error500", count=2)
    worker = start_worker(env=smtp_env(smtp_server))

    # When a customer pays an order
    order = checkout(customer_client, [(product.sku, 2)], card=GOOD_CARD)

    # Then the worker retries until the warehouse accepts, and the order walks its life:
    # the warehouse ships (the payment is captured) and delivers
    wait_for(
        lambda: order_status(order["id"]) == "delivered",
        worker=worker,
        timeout=30,
        what="the order to be delivered",
    )
    wait_outbox_settled(worker)
    assert history(order["id"]) == [
        ("place", "pending_payment"),
        ("confirm", "confirmed"),
        ("route", "routed"),
        ("ship", "shipped"),
        ("deliver", "delivered"),
    ]
    request = FulfilmentRequest.objects.get(order_id=order["id"])
    assert (request.status, request.attempts) == ("accepted", 3)
    assert route_message(order["id"]).attempts == 3
    assert list(fulfilments_by_key(fake)) == [request.idempotency_key]
    assert [(r["status"], r["duplicate"]) for r in fake.requests()] == [
        (500, False),
        (500, False),
        (201, False),
    ]
    (shipment,) = fake.shipments()
    assert shipment["state"] == "delivered"
    assert Shipment.objects.get(order_id=order["id"]).status == "delivered"
    (intent,) = payments_at_fake_stripe.payment_intents(order_id=order["id"])
    assert intent["status"] == "succeeded"
    charges = intent["charges"]["data"]
    assert [(charge["captured"], charge["amount"]) for charge in charges] == [(True, 5000)]
    assert Payment.objects.get(order_id=order["id"]).status == "captured"
    assert emails_received(smtp_server) == {
        (order["id"], CONFIRMED): 1,
        (order["id"], EmailDelivery.Kind.ORDER_SHIPPED): 1,
        (order["id"], EmailDelivery.Kind.ORDER_DELIVERED): 1,
    }
    assert_stock_consistent()


@pytest.mark.django_db(transaction=True)
def test_warehouse_timing_out_is_asked_again_with_the_same_key_and_routes(
    start_worker, fake_warehouses, stocked_product, customer_client, staff_client, smtp_server
):
    # Given a warehouse that carries the next request out but answers only after the
    # worker gave up waiting (read timeout 1 s)
    fake = fake_warehouses(auto_callbacks=False, hang_seconds=3.0)
    warehouse_at("main", fake)
    product = stocked_product(quantities={"main": 5})
    fake.configure(mode="hang", count=1)
    worker = start_worker(env={**smtp_env(smtp_server), "FULFILMENT_READ_TIMEOUT_SECONDS": "1"})
    order = checkout(customer_client, [(product.sku, 1)])

    # When staff confirm it (paid offline)
    staff_transition(staff_client, order["id"], "confirm")

    # Then the retry asks again with the same key, gets the first answer replayed,
    # and the order is routed on the one shipment
    wait_for(
        lambda: order_status(order["id"]) == "routed",
        worker=worker,
        timeout=20,
        what="the order to be routed",
    )
    wait_outbox_settled(worker)
    request = FulfilmentRequest.objects.get(order_id=order["id"])
    assert (request.status, request.attempts) == ("accepted", 2)
    assert list(fulfilments_by_key(fake)) == [request.idempotency_key]
    assert [(r["answered"], r["duplicate"]) for r in fake.requests()] == [
        (False, False),
        (True, True),
    ]
    (shipment,) = fake.shipments()
    assert Shipment.objects.get(order_id=order["id"]).reference == shipment["shipment_reference"]
    assert history(order["id"]) == [
        ("place", "pending_payment"),
        ("confirm", "confirmed"),
        ("route", "routed"),
    ]
    assert emails_received(smtp_server) == {(order["id"], CONFIRMED): 1}


@pytest.mark.django_db(transaction=True)
def test_rejecting_warehouse_moves_the_reservation_to_another_that_fulfils(
    start_worker, fake_warehouses, stocked_product, customer_client, staff_client, smtp_server
):
    # Given the preferred warehouse cannot fulfil anything, another has the stock too
    refusing = fake_warehouses(auto_callbacks=False)
    willing = fake_warehouses(auto_callbacks=False)
    warehouse_at("preferred", refusing, priority=10)
    warehouse_at("fallback", willing, priority=0)
    product = stocked_product(quantities={"preferred": 3, "fallback": 3})
    refusing.configure(mode="reject")
    worker = start_worker(env=smtp_env(smtp_server))
    order = checkout(customer_client, [(product.sku, 2)])
    assert held_at(order["id"]) == {"preferred": 2}

    # When the order is confirmed
    staff_transition(staff_client, order["id"], "confirm")

    # Then the rejection moves the units to the other warehouse, which fulfils them
    wait_for(
        lambda: order_status(order["id"]) == "routed",
        worker=worker,
        timeout=20,
        what="the order to be routed",
    )
    wait_outbox_settled(worker)
    assert held_at(order["id"]) == {"fallback": 2}
    reserved = dict(StockItem.objects.values_list("warehouse__code", "reserved"))
    assert reserved == {"preferred": 0, "fallback": 2}
    assert_stock_consistent()
    requests = {r.warehouse.code: r for r in FulfilmentRequest.objects.filter(order_id=order["id"])}
    assert requests["preferred"].status == "rejected"
    assert requests["preferred"].reject_code == "cannot_fulfil"
    assert requests["fallback"].status == "accepted"
    assert [(r["status"], r["duplicate"]) for r in refusing.requests()] == [(409, False)]
    assert [(r["status"], r["duplicate"]) for r in willing.requests()] == [(201, False)]
    assert (len(refusing.shipments()), len(willing.shipments())) == (0, 1)
    assert history(order["id"]) == [
        ("place", "pending_payment"),
        ("confirm", "confirmed"),
        ("route", "routed"),
    ]
    assert emails_received(smtp_server) == {(order["id"], CONFIRMED): 1}


@pytest.mark.django_db(transaction=True)
def test_rejection_with_no_other_warehouse_cancels_voids_the_payment_and_emails(
    start_worker,
    payments_at_fake_stripe,
    fake_warehouses,
    stocked_product,
    customer_client,
    smtp_server,
):
    # Given the only warehouse with stock rejects every request
    fake = fake_warehouses(auto_callbacks=False)
    warehouse_at("only", fake)
    product = stocked_product(quantities={"only": 4}, price=1200)
    fake.configure(mode="reject")
    worker = start_worker(env=smtp_env(smtp_server))

    # When a customer pays an order
    order = checkout(customer_client, [(product.sku, 3)], card=GOOD_CARD)
    assert order["status"] == "confirmed"

    # Then nobody can fulfil it: the order is cancelled, its stock released, the
    # authorization voided at the provider and the customer told
    wait_for(
        lambda: order_status(order["id"]) == "cancelled",
        worker=worker,
        timeout=20,
        what="the order to be cancelled",
    )
    wait_outbox_settled(worker)
    assert history(order["id"]) == [
        ("place", "pending_payment"),
        ("confirm", "confirmed"),
        ("cancel", "cancelled"),
    ]
    assert held_at(order["id"]) == {}
    assert StockItem.objects.get(warehouse__code="only").reserved == 0
    assert_stock_consistent()
    assert FulfilmentRequest.objects.get(order_id=order["id"]).status == "rejected"
    assert len(fake.shipments()) == 0
    payment = Payment.objects.get(order_id=order["id"])
    assert payment.status == "voided"
    (intent,) = payments_at_fake_stripe.payment_intents(order_id=order["id"])
    assert intent["status"] == "canceled"
    assert emails_received(smtp_server) == {
        (order["id"], CONFIRMED): 1,
        (order["id"], EmailDelivery.Kind.ORDER_CANCELLED): 1,
    }
