"""Partial shipments, end to end: the fake warehouse (a real HTTP server in a thread)
ships part of an order and calls oms back over HTTP (live server); the payment is
authorized and captured at the fake Stripe server; stock is counted on PostgreSQL."""

import json
import threading
import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from core.actors import Actor
from core.signing import sign
from fakes.warehouse import FakeWarehouse
from flows.pay import order_pay
from flows.place import OrderLineRequest, order_place
from flows.routing import order_route
from fulfilment.models import Shipment, ShipmentLine
from inventory.models import Product, Reservation, StockItem
from orders.models import Order, OrderEvent
from orders.states import OrderStatus
from payments.models import Payment
from tests.conftest import assert_stock_consistent, new_idempotency_key, stock_receive, token_client
from tests.factories import ProductFactory, StaffFactory, UserFactory, WarehouseFactory
from tests.fulfilment.conftest import ADDRESS, CALLBACK_URL, assert_problem
from tests.support.fake_warehouse import WAREHOUSE_SECRET, wait_until

pytest_plugins = ("tests.support.fake_warehouse", "tests.support.smtp", "tests.support.fake_stripe")
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("_fulfilment_settings", "stripe_provider"),
]

GEAR_PRICE = 1999
COG_PRICE = 500
ON_HAND = 10


@pytest.fixture
def world(live_server: Any, fake_warehouse: FakeWarehouse, settings: Any) -> dict[str, Any]:
    """A warehouse that calls oms back over HTTP, and two products stocked there."""
    settings.FULFILMENT_CALLBACK_BASE_URL = live_server.url
    fake_warehouse.configure(auto_callbacks=False)
    warehouse = WarehouseFactory(
        fulfilment_url=fake_warehouse.requests_url, fulfilment_secret=WAREHOUSE_SECRET
    )
    gear = ProductFactory(price=GEAR_PRICE, name="Brass gear")
    cog = ProductFactory(price=COG_PRICE, name="Steel cog")
    stock_receive(gear, warehouse, ON_HAND)
    stock_receive(cog, warehouse, ON_HAND)
    return {"warehouse": warehouse, "gear": gear, "cog": cog, "fake": fake_warehouse}


def paid_routed_order(world: dict[str, Any], *, gears: int = 3, cogs: int = 2) -> Shipment:
    """3 gears and 2 cogs, authorized at the fake Stripe, accepted by the warehouse."""
    order = order_place(
        customer=UserFactory(),
        email="ada@example.com",
        shipping_address=ADDRESS,
        lines=[
            OrderLineRequest(sku=world["gear"].sku, quantity=gears),
            OrderLineRequest(sku=world["cog"].sku, quantity=cogs),
        ],
        actor=Actor.system(),
    )
    payment = order_pay(order_id=order.pk, payment_method="pm_card_visa", actor=Actor.system())
    assert payment.status == Payment.Status.AUTHORIZED
    order_route(order_id=order.pk)  # routed on commit already; a second call changes nothing
    shipment = Shipment.objects.select_related("order", "warehouse").get(order=order)
    assert shipment.order.status == OrderStatus.ROUTED
    return shipment


def stock(product: Product) -> tuple[int, int]:
    item = StockItem.objects.get(product=product)
    return item.on_hand, item.reserved


def order_status(shipment: Shipment) -> str:
    return str(Order.objects.get(pk=shipment.order_id).status)


def payment_of(shipment: Shipment) -> Payment:
    return Payment.objects.get(order_id=shipment.order_id)


def cancel_rest(shipment: Shipment) -> Any:
    return token_client(StaffFactory(groups=["support"])).post(
        f"/api/v1/orders/{shipment.order_id}/cancel-rest/",
        {"reason": "the rest is backordered"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )


def test_shipping_part_then_the_rest_captures_exactly_the_order_total(world):
    shipment = paid_routed_order(world)
    gear, cog, fake = world["gear"], world["cog"], world["fake"]

    # when the warehouse ships 2 of the 3 gears
    part = fake.ship_part(shipment.reference, [{"sku": gear.sku, "quantity": 2}])

    # then those units left, the order is partially shipped, and they are captured
    # (a capture that is not final: the payment stays authorized for the rest)
    assert part["delivered"] is True
    assert order_status(shipment) == OrderStatus.PARTIALLY_SHIPPED
    shipment.refresh_from_db()
    assert shipment.status == Shipment.Status.PARTIALLY_SHIPPED
    assert list(shipment.order.lines.values_list("sku", "shipped_quantity")) == [
        (gear.sku, 2),
        (cog.sku, 0),
    ]
    assert stock(gear) == (ON_HAND - 2, 1)
    assert stock(cog) == (ON_HAND, 2)
    payment = payment_of(shipment)
    assert (payment.status, payment.amount_captured) == (Payment.Status.AUTHORIZED, 2 * GEAR_PRICE)
    assert_stock_consistent()

    # when it ships the rest (a shipped callback that names no lines)
    rest = fake.send_event(shipment.reference, "shipped")

    # then the order shipped and exactly its total was captured, in two captures
    assert rest["delivered"] is True
    wait_until(lambda: order_status(shipment) == OrderStatus.SHIPPED, what="order shipped")
    order = Order.objects.get(pk=shipment.order_id)
    payment = payment_of(shipment)
    assert (payment.status, payment.amount_captured) == ("captured", order.total_amount)
    assert order.total_amount == 3 * GEAR_PRICE + 2 * COG_PRICE
    assert list(
        payment.operations.filter(kind="capture").values_list("amount", "final", "status")
    ) == [(2 * GEAR_PRICE, False, "succeeded"), (GEAR_PRICE + 2 * COG_PRICE, True, "succeeded")]
    assert list(order.lines.values_list("shipped_quantity", flat=True)) == [3, 2]
    assert stock(gear) == (ON_HAND - 3, 0)
    assert stock(cog) == (ON_HAND - 2, 0)
    assert set(
        Reservation.objects.filter(order_line__order=order).values_list("status", flat=True)
    ) == {"committed"}
    assert [c.transition for c in order.status_changes.order_by("created_at", "pk")] == [
        "place",
        "confirm",
        "route",
        "ship_partially",
        "ship",
    ]
    assert_stock_consistent()


def test_a_repeated_part_report_changes_nothing(world):
    shipment = paid_routed_order(world)
    gear = world["gear"]
    body = json.dumps(
        {
            "event": "shipped",
            "event_id": "evt_part_1",
            "shipment_reference": shipment.reference,
            "order_number": shipment.order.number,
            "warehouse_code": shipment.warehouse.code,
            "carrier": "DHL",
            "tracking_number": "JJD1",
            "lines": [{"sku": gear.sku, "quantity": 1}],
        }
    ).encode()

    def report() -> Any:
        return APIClient().post(
            CALLBACK_URL,
            data=body,
            content_type="application/json",
            HTTP_X_WAREHOUSE_CODE=shipment.warehouse.code,
            HTTP_X_OMS_SIGNATURE=sign(body, WAREHOUSE_SECRET, int(time.time())),
        )

    assert report().status_code == 200
    assert report().status_code == 200
    assert report().status_code == 200

    assert ShipmentLine.objects.filter(shipment=shipment).count() == 1
    assert shipment.order.lines.get(sku=gear.sku).shipped_quantity == 1
    assert stock(gear) == (ON_HAND - 1, 2)
    assert (
        OrderEvent.objects.filter(order=shipment.order, type="shipment.partially_shipped").count()
        == 1
    )
    assert_stock_consistent()


def test_a_report_of_more_units_than_are_left_is_refused(world, anonymous_client):
    shipment = paid_routed_order(world)
    world["fake"].ship_part(shipment.reference, [{"sku": world["gear"].sku, "quantity": 2}])
    body = json.dumps(
        {
            "event": "shipped",
            "event_id": "evt_too_many",
            "shipment_reference": shipment.reference,
            "lines": [{"sku": world["gear"].sku, "quantity": 2}],
        }
    ).encode()

    response = anonymous_client.post(
        CALLBACK_URL,
        data=body,
        content_type="application/json",
        HTTP_X_WAREHOUSE_CODE=shipment.warehouse.code,
        HTTP_X_OMS_SIGNATURE=sign(body, WAREHOUSE_SECRET, int(time.time())),
    )

    assert_problem(response, 400, "shipment_lines_invalid")
    assert shipment.order.lines.get(sku=world["gear"].sku).shipped_quantity == 2
    assert stock(world["gear"]) == (ON_HAND - 2, 1)


def test_cancelling_the_rest_captures_what_shipped_and_releases_the_rest(
    world, fake_warehouse, smtp_backend
):
    shipment = paid_routed_order(world)
    gear, cog = world["gear"], world["cog"]
    fake_warehouse.ship_part(shipment.reference, [{"sku": gear.sku, "quantity": 1}])

    response = cancel_rest(shipment)

    assert response.status_code == 200, response.content
    assert response.json()["status"] == OrderStatus.SHIPPED
    assert [w["result"] for w in fake_warehouse.withdrawals()] == ["withdrawn"]
    shipment.refresh_from_db()
    assert shipment.status == Shipment.Status.SHIPPED
    payment = payment_of(shipment)
    assert (payment.status, payment.amount_captured) == ("captured", GEAR_PRICE)
    # The shipped gear was captured on its own; the rest was released (a cancel).
    assert list(
        payment.operations.filter(kind="capture").values_list("amount", "final", "reference")
    ) == [
        (GEAR_PRICE, False, f"shipment-{shipment.pk}-report-{shipment.lines.get().pk}"),
        (0, True, "rest"),
    ]
    assert stock(gear) == (ON_HAND - 1, 0)
    assert stock(cog) == (ON_HAND, 0)
    order = Order.objects.get(pk=shipment.order_id)
    assert list(order.lines.values_list("shipped_quantity", flat=True)) == [1, 0]
    (event,) = OrderEvent.objects.filter(order=order, type="order.rest_cancelled")
    assert event.data["change"]["lines"] == [
        {"sku": s, "quantity": q} for s, q in sorted([(gear.sku, 2), (cog.sku, 2)])
    ]
    assert_stock_consistent()
    # The customer is told what will not ship (and, as always, what shipped).
    wait_until(lambda: len(smtp_backend.messages) == 3, what="three emails")
    (told,) = [m for m in smtp_backend.messages if "was cancelled" in m.header("Subject")]
    assert told.header("Subject") == f"Part of your order {order.number} was cancelled"
    assert f"2 x Brass gear ({gear.sku})" in told.text
    assert f"2 x Steel cog ({cog.sku})" in told.text
    # A return may take back only what shipped.
    too_many = token_client(StaffFactory(groups=["support"])).post(
        f"/api/v1/orders/{order.pk}/returns/",
        {"lines": [{"sku": gear.sku, "quantity": 2}], "reason": "too many"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )
    assert_problem(too_many, 409, "return_exceeds_shipped")


def test_cancel_rest_is_refused_unless_the_order_is_partially_shipped(world):
    shipment = paid_routed_order(world)

    response = cancel_rest(shipment)

    assert_problem(response, 409, "invalid_transition")
    assert order_status(shipment) == OrderStatus.ROUTED
    assert world["fake"].withdrawals() == []


@pytest.mark.parametrize("attempt", range(3))
def test_a_cancel_of_the_rest_racing_its_shipment_either_withdraws_or_ships_never_both(
    world, fake_warehouse, attempt
):
    # Given an order part of which has shipped
    shipment = paid_routed_order(world)
    gear, cog = world["gear"], world["cog"]
    fake_warehouse.ship_part(shipment.reference, [{"sku": gear.sku, "quantity": 1}])
    answers: dict[str, Any] = {}
    start = threading.Barrier(2)

    def cancel() -> None:
        start.wait()
        answers["cancel"] = cancel_rest(shipment).status_code

    def ship() -> None:
        start.wait()
        try:
            answers["ship"] = fake_warehouse.send_event(shipment.reference, "shipped")
        except ValueError as error:  # withdrawn first
            answers["ship"] = str(error)

    # When support cancels the rest while the warehouse ships it
    threads = [threading.Thread(target=cancel), threading.Thread(target=ship)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    wait_until(lambda: order_status(shipment) == OrderStatus.SHIPPED, what="order shipped")

    # Then exactly one of them won, and stock and money follow the winner
    withdrawn = [w["result"] for w in fake_warehouse.withdrawals()] == ["withdrawn"]
    order = Order.objects.get(pk=shipment.order_id)
    payment = payment_of(shipment)
    shipped = list(order.lines.values_list("shipped_quantity", flat=True))
    if withdrawn:
        assert answers["cancel"] == 200
        # Refused before, or found withdrawn when the parcel was to leave: no callback.
        assert answers["ship"] == f"shipment {shipment.reference} is withdrawn" or (
            answers["ship"]["delivered"] is False
        )
        assert shipped == [1, 0]
        assert payment.amount_captured == GEAR_PRICE
        assert stock(gear) == (ON_HAND - 1, 0)
        assert stock(cog) == (ON_HAND, 0)
    else:
        # Shipped first: the cancel found nothing to withdraw (200) or the order shipped (409).
        assert answers["cancel"] in (200, 409)
        assert answers["ship"]["delivered"] is True
        assert shipped == [3, 2]
        assert payment.amount_captured == order.total_amount
        assert stock(gear) == (ON_HAND - 3, 0)
        assert stock(cog) == (ON_HAND - 2, 0)
    assert payment.status == Payment.Status.CAPTURED
    # The part that left first, then the rest (shipped, or released), each once.
    assert list(payment.operations.filter(kind="capture").values_list("final", "status")) == [
        (False, "succeeded"),
        (True, "succeeded"),
    ]
    assert_stock_consistent()


def test_a_delivered_report_for_a_part_ships_nothing_more(world, anonymous_client):
    shipment = paid_routed_order(world)
    world["fake"].ship_part(shipment.reference, [{"sku": world["cog"].sku, "quantity": 1}])
    body = json.dumps(
        {
            "event": "delivered",
            "event_id": "evt_part_delivered",
            "shipment_reference": shipment.reference,
        }
    ).encode()

    response = anonymous_client.post(
        CALLBACK_URL,
        data=body,
        content_type="application/json",
        HTTP_X_WAREHOUSE_CODE=shipment.warehouse.code,
        HTTP_X_OMS_SIGNATURE=sign(body, WAREHOUSE_SECRET, int(time.time())),
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == Shipment.Status.PARTIALLY_SHIPPED
    assert order_status(shipment) == OrderStatus.PARTIALLY_SHIPPED
    assert list(shipment.order.lines.values_list("shipped_quantity", flat=True)) == [0, 1]
    assert payment_of(shipment).status == Payment.Status.AUTHORIZED


def test_a_cancelled_rest_is_not_charged_its_own_tax():
    # given: 3 units at 10.00 with 6.00 tax, 1 unit shipped; 2 units at 5.00 with 2.00 tax,
    # both shipped; 4.00 shipping kept
    from types import SimpleNamespace

    from flows.ship import order_capture_amount

    lines = [
        SimpleNamespace(unit_price=1000, quantity=3, shipped_quantity=1, tax_amount=600),
        SimpleNamespace(unit_price=500, quantity=2, shipped_quantity=2, tax_amount=200),
    ]
    order = SimpleNamespace(
        status=OrderStatus.PARTIALLY_SHIPPED,
        lines=SimpleNamespace(all=lambda: lines),
        total_amount=3000 + 1000 + 800 + 400,
    )
    authorized = 3000 + 1000 + 800 + 400

    # then: the 2 unshipped units and their 4.00 of tax are not captured
    assert order_capture_amount(order=order, authorized=authorized) == authorized - 2000 - 400
