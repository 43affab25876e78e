"""Cancelling an order a warehouse holds: the warehouse is asked to withdraw first, over
its real HTTP contract, and the order is cancelled only when every warehouse confirmed.
A shipment reported for a cancelled order still leaves the ledger true."""

from typing import Any

import pytest

from core.actors import Actor
from fakes.warehouse import FakeWarehouse
from flows.place import OrderLineRequest, order_place
from flows.routing import order_route
from flows.transitions import order_transition_by_name
from fulfilment.models import FulfilmentRequest, Shipment
from inventory.models import Reservation, StockItem, StockMovement
from orders.models import Order
from payments.models import Payment
from tests.conftest import (
    assert_stock_consistent,
    new_idempotency_key,
    stock_receive,
    token_client,
)
from tests.factories import ProductFactory, UserFactory, WarehouseFactory
from tests.fulfilment.conftest import ADDRESS, assert_problem, shipped
from tests.support.fake_stripe import FakeStripeServer
from tests.support.fake_warehouse import FAST, WAREHOUSE_SECRET

pytest_plugins = ("tests.support.fake_warehouse", "tests.support.fake_stripe")
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("_fulfilment_settings")]


def cancel(order: Order) -> Any:
    return token_client(order.customer).post(
        f"/api/v1/orders/{order.pk}/cancel/",
        {"reason": "changed my mind"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )


def reservation_statuses(order: Order) -> set[str]:
    return set(Reservation.objects.filter(order_line__order=order).values_list("status", flat=True))


def test_cancelling_a_routed_order_withdraws_it_from_the_warehouse(
    routed_shipment: Shipment, fake_warehouse: FakeWarehouse
):
    order = routed_shipment.order

    response = cancel(order)

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    withdrawals = fake_warehouse.withdrawals()
    assert [w["request_id"] for w in withdrawals] == [str(routed_shipment.fulfilment_request_id)]
    assert [w["result"] for w in withdrawals] == ["withdrawn"]
    assert [s["state"] for s in fake_warehouse.shipments()] == ["withdrawn"]
    routed_shipment.refresh_from_db()
    assert routed_shipment.status == Shipment.Status.WITHDRAWN
    assert FulfilmentRequest.objects.get(order=order).status == "withdrawn"
    assert reservation_statuses(order) == {"released"}
    assert_stock_consistent()


def test_cancel_is_refused_when_the_warehouse_already_shipped(
    routed_shipment: Shipment, fake_warehouse: FakeWarehouse
):
    fake_warehouse.configure(withdraw_mode="refuse")
    order = routed_shipment.order

    response = cancel(order)

    body = assert_problem(response, 409, "order_at_warehouse")
    assert "already shipped" in body["detail"]
    order.refresh_from_db()
    assert order.status == "routed"
    assert reservation_statuses(order) == {"held"}
    assert FulfilmentRequest.objects.get(order=order).status == "accepted"
    assert_stock_consistent()


def test_cancel_when_the_warehouse_cannot_be_reached_changes_nothing(
    routed_shipment: Shipment, fake_warehouse: FakeWarehouse
):
    fake_warehouse.configure(withdraw_mode="error500")
    order = routed_shipment.order

    response = cancel(order)

    assert_problem(response, 503, "warehouse_unavailable")
    assert int(response["Retry-After"]) > 0
    order.refresh_from_db()
    assert order.status == "routed"
    assert reservation_statuses(order) == {"held"}
    # Once the warehouse answers again, the same cancel goes through.
    fake_warehouse.configure(withdraw_mode="allow")
    assert cancel(order).status_code == 200


def test_cancelling_a_routed_paid_order_voids_its_authorization(
    stripe_provider: FakeStripeServer, confirmed_order: Any, fake_warehouse: FakeWarehouse
):
    order = confirmed_order(pay="pm_card_visa")
    order_route(order_id=order.pk)

    response = cancel(order)

    assert response.status_code == 200, response.json()
    assert response.json()["payment"]["status"] == "voided"
    assert Payment.objects.get(order=order).amount_captured == 0
    assert [w["result"] for w in fake_warehouse.withdrawals()] == ["withdrawn"]


def test_shipment_reported_after_cancel_takes_the_units_off_hand(
    routed_shipment: Shipment, anonymous_client: Any
):
    # Given a cancelled order whose warehouse confirmed the withdrawal
    order = routed_shipment.order
    assert cancel(order).status_code == 200
    item = StockItem.objects.get(reservations__order_line__order=order)
    on_hand_before = item.on_hand

    # When the warehouse reports it shipped after all
    response = shipped(anonymous_client, routed_shipment)

    # Then the record follows the goods: the units left on_hand, nothing was reserved
    # for them any more, the order stays cancelled and nothing was captured
    assert response.status_code == 200, response.content
    item.refresh_from_db()
    assert item.on_hand == on_hand_before - 2
    assert StockMovement.objects.filter(stock_item=item, kind="ship").count() == 1
    order.refresh_from_db()
    assert order.status == "cancelled"
    assert not Payment.objects.filter(order=order).exists()
    assert_stock_consistent()
    # A repeated report changes nothing more.
    assert shipped(anonymous_client, routed_shipment).status_code == 200
    item.refresh_from_db()
    assert item.on_hand == on_hand_before - 2


def test_cancel_is_refused_at_once_when_a_shipment_was_reported_shipped(
    routed_shipment: Shipment, fake_warehouse: FakeWarehouse, anonymous_client: Any
):
    assert shipped(anonymous_client, routed_shipment).status_code == 200
    order = routed_shipment.order

    response = cancel(order)

    assert_problem(response, 409, "order_at_warehouse")
    assert fake_warehouse.withdrawals() == []
    # The units left when the warehouse reported them shipped, before any capture.
    assert reservation_statuses(order) == {"committed"}


def test_a_cancel_refused_by_one_warehouse_asks_the_others_again(
    fake_warehouse: FakeWarehouse, django_capture_on_commit_callbacks: Any
):
    # Given an order split over two warehouses, both of which accepted their part
    fake_warehouse.configure(auto_callbacks=False)
    with FakeWarehouse(secret=WAREHOUSE_SECRET, **FAST) as other:
        other.configure(auto_callbacks=False, withdraw_mode="refuse")
        first = WarehouseFactory(
            fulfilment_url=fake_warehouse.requests_url, fulfilment_secret=WAREHOUSE_SECRET
        )
        second = WarehouseFactory(
            fulfilment_url=other.requests_url, fulfilment_secret=WAREHOUSE_SECRET
        )
        gear, cog = ProductFactory(price=500), ProductFactory(price=700)
        stock_receive(gear, first, 5)
        stock_receive(cog, second, 5)
        order = order_place(
            customer=UserFactory(),
            email="ada@example.com",
            shipping_address=ADDRESS,
            lines=[OrderLineRequest(gear.sku, 1), OrderLineRequest(cog.sku, 1)],
            actor=Actor.system(),
        )
        order_transition_by_name(order_id=order.pk, transition="confirm", actor=Actor.system())
        order_route(order_id=order.pk)
        order.refresh_from_db()
        assert order.status == "routed"

        # When the customer cancels: the first withdraws, the second has shipped already
        with django_capture_on_commit_callbacks(execute=True):
            response = cancel(order)

        # Then the cancel is refused, and the first warehouse is asked again under a new
        # request, so the order goes on as it was
        assert_problem(response, 409, "order_at_warehouse")
        assert [w["result"] for w in fake_warehouse.withdrawals()] == ["withdrawn"]
        requests = list(
            FulfilmentRequest.objects.filter(order=order, warehouse=first).order_by("pk")
        )
        assert [r.status for r in requests] == ["withdrawn", "accepted"]
        assert len(fake_warehouse.requests()) == 2
        open_shipments = Shipment.objects.filter(order=order).exclude(status="withdrawn")
        assert sorted(s.warehouse_id for s in open_shipments) == sorted([first.pk, second.pk])
        order.refresh_from_db()
        assert order.status == "routed"
        assert reservation_statuses(order) == {"held"}
        assert_stock_consistent()
