"""order_route against in-process fake warehouses over signed HTTP.

Each warehouse that takes part is a `FakeWarehouse` on loopback with automatic
callbacks off; the order is confirmed without a payment provider, so routing is the only
thing that talks to the outside.
"""

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.actors import Actor
from core.breakers import circuit_breakers_reset
from core.models import OutboxMessage
from fakes.warehouse import FakeWarehouse
from flows.place import OrderLineRequest, order_place
from flows.routing import order_route
from flows.transitions import order_transition_by_name
from fulfilment.errors import WarehousesUnavailable
from fulfilment.models import FulfilmentRequest, Shipment
from inventory.models import Product, Reservation, StockItem, StockMovement, Warehouse
from orders.models import Order
from orders.states import OrderStatus
from tests.conftest import assert_stock_consistent, stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory
from tests.support.fake_warehouse import FAST, WAREHOUSE_SECRET

pytest_plugins = ("tests.support.fake_warehouse", "tests.support.smtp")
pytestmark = pytest.mark.django_db

ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Analytical Way",
    "line2": "",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}


@pytest.fixture(autouse=True)
def _routing_settings(settings: Any) -> Iterator[None]:
    settings.FULFILMENT_CONNECT_TIMEOUT_SECONDS = 1.0
    settings.FULFILMENT_READ_TIMEOUT_SECONDS = 2.0
    settings.FULFILMENT_CALLBACK_BASE_URL = "http://oms.test"
    settings.WAREHOUSE_BREAKER_FAIL_MAX = 1000
    settings.WAREHOUSE_BREAKER_RESET_SECONDS = 30
    circuit_breakers_reset()
    yield
    circuit_breakers_reset()


@pytest.fixture
def fakes() -> Iterator[Callable[[], FakeWarehouse]]:
    """Start more fake warehouses: fakes() -> a running FakeWarehouse (no callbacks)."""
    started: list[FakeWarehouse] = []

    def start() -> FakeWarehouse:
        fake = FakeWarehouse(secret=WAREHOUSE_SECRET, **{**FAST, "auto_callbacks": False})
        started.append(fake.start())
        return fake

    yield start
    for fake in started:
        fake.stop()


def served_by(fake: FakeWarehouse | None, *, priority: int = 0) -> Warehouse:
    """A warehouse whose fulfilment service is `fake` (None: operated by hand)."""
    if fake is None:
        return WarehouseFactory(priority=priority)
    return WarehouseFactory(
        priority=priority,
        fulfilment_url=fake.requests_url,
        fulfilment_secret=WAREHOUSE_SECRET,
    )


def product_at(stock: dict[Warehouse, int]) -> Product:
    product = ProductFactory(price=1500)
    for warehouse, quantity in stock.items():
        stock_receive(product, warehouse, quantity)
    return product


def confirmed_order(lines: list[tuple[Product, int]]) -> Order:
    """Place and confirm an order (as a payment would); its outbox stays undelivered."""
    order = order_place(
        customer=UserFactory(),
        email="ada@example.com",
        shipping_address=ADDRESS,
        lines=[OrderLineRequest(sku=product.sku, quantity=qty) for product, qty in lines],
        actor=Actor.system(),
    )
    return order_transition_by_name(order_id=order.pk, transition="confirm", actor=Actor.system())


def status_of(order: Order) -> str:
    order.refresh_from_db()
    return order.status


def held_at(order: Order) -> dict[str, int]:
    """Units the order holds, by warehouse code."""
    held: dict[str, int] = {}
    for reservation in Reservation.objects.filter(
        order_line__order=order, status=Reservation.Status.HELD
    ).select_related("stock_item__warehouse"):
        code = reservation.stock_item.warehouse.code
        held[code] = held.get(code, 0) + reservation.quantity
    return held


def counters(product: Product, warehouse: Warehouse) -> tuple[int, int]:
    item = StockItem.objects.get(product=product, warehouse=warehouse)
    return item.on_hand, item.reserved


# Accepted.


def test_accepting_warehouse_gets_a_signed_request_and_the_order_is_routed(fakes):
    fake = fakes()
    warehouse = served_by(fake)
    product = product_at({warehouse: 5})
    order = confirmed_order([(product, 2)])

    order_route(order_id=order.pk)

    request = FulfilmentRequest.objects.get(order=order)
    assert request.status == FulfilmentRequest.Status.ACCEPTED
    assert request.warehouse == warehouse
    assert request.attempts == 1
    (seen,) = fake.requests()
    assert seen["signature_ok"] is True
    assert seen["idempotency_key"] == f"oms-fulfilment-request-{request.pk}"
    assert seen["body"]["order_number"] == order.number
    assert seen["body"]["warehouse_code"] == warehouse.code
    assert seen["body"]["lines"] == [{"sku": product.sku, "name": product.name, "quantity": 2}]
    assert seen["body"]["callback_url"] == "http://oms.test/api/v1/fulfilment/callbacks/"
    assert seen["body"]["shipping_address"]["city"] == "London"
    shipment = Shipment.objects.get(order=order)
    assert shipment.reference == seen["shipment_reference"]
    assert (shipment.warehouse, shipment.status) == (warehouse, Shipment.Status.ACCEPTED)
    assert status_of(order) == OrderStatus.ROUTED
    route = order.status_changes.get(transition="route")
    assert (route.from_status, route.to_status, route.actor_label) == (
        OrderStatus.CONFIRMED,
        OrderStatus.ROUTED,
        "system",
    )
    # Stock stays held until the order ships.
    assert held_at(order) == {warehouse.code: 2}


def test_routing_again_asks_nobody_twice(fakes):
    fake = fakes()
    warehouse = served_by(fake)
    order = confirmed_order([(product_at({warehouse: 5}), 1)])
    order_route(order_id=order.pk)

    order_route(order_id=order.pk)

    assert len(fake.requests()) == 1
    assert Shipment.objects.filter(order=order).count() == 1
    assert order.status_changes.filter(transition="route").count() == 1


def test_split_order_is_routed_only_when_every_warehouse_accepted(fakes):
    fake_a, fake_b = fakes(), fakes()
    north, south = served_by(fake_a), served_by(fake_b)
    gear = product_at({north: 3})
    spring = product_at({south: 3})
    order = confirmed_order([(gear, 2), (spring, 1)])
    assert held_at(order) == {north.code: 2, south.code: 1}
    fake_b.configure(mode="error500", count=1)

    with pytest.raises(WarehousesUnavailable, match=south.code):
        order_route(order_id=order.pk)

    assert status_of(order) == OrderStatus.CONFIRMED
    statuses = dict(FulfilmentRequest.objects.values_list("warehouse__code", "status"))
    assert statuses == {north.code: "accepted", south.code: "pending"}
    assert Shipment.objects.filter(order=order).count() == 1

    order_route(order_id=order.pk)

    assert status_of(order) == OrderStatus.ROUTED
    assert [r["body"]["lines"][0]["sku"] for r in fake_a.requests()] == [gear.sku]
    assert [r["status"] for r in fake_b.requests()] == [500, 201]
    assert {s.warehouse.code for s in Shipment.objects.filter(order=order)} == {
        north.code,
        south.code,
    }
    assert order.status_changes.filter(transition="route").count() == 1


# Rejected.


def test_rejection_moves_the_units_to_another_warehouse_and_asks_it(fakes):
    fake_a, fake_b = fakes(), fakes()
    first, second = served_by(fake_a, priority=10), served_by(fake_b, priority=0)
    product = product_at({first: 4, second: 4})
    order = confirmed_order([(product, 3)])
    assert held_at(order) == {first.code: 3}
    fake_a.configure(mode="reject")

    order_route(order_id=order.pk)

    rejected = FulfilmentRequest.objects.get(order=order, warehouse=first)
    assert (rejected.status, rejected.reject_code) == ("rejected", "cannot_fulfil")
    accepted = FulfilmentRequest.objects.get(order=order, warehouse=second)
    assert accepted.status == FulfilmentRequest.Status.ACCEPTED
    assert [r["body"]["warehouse_code"] for r in fake_b.requests()] == [second.code]
    assert held_at(order) == {second.code: 3}
    assert counters(product, first) == (4, 0)
    assert counters(product, second) == (4, 3)
    assert_stock_consistent()
    moves = StockMovement.objects.filter(reservation__order_line__order=order, kind="release")
    assert [m.reason for m in moves] == [f"re-routed: {first.code} rejected (cannot_fulfil)"]
    assert status_of(order) == OrderStatus.ROUTED
    assert Shipment.objects.get(order=order).warehouse == second


def test_rejection_with_no_stock_elsewhere_cancels_the_order(fakes):
    fake = fakes()
    only = served_by(fake)
    product = product_at({only: 2})
    order = confirmed_order([(product, 2)])
    fake.configure(reject_skus=[product.sku])

    order_route(order_id=order.pk)

    assert status_of(order) == OrderStatus.CANCELLED
    cancel = order.status_changes.get(transition="cancel")
    assert cancel.reason.startswith(f"no warehouse can fulfil the order ({only.code}:")
    assert counters(product, only) == (2, 0)
    assert held_at(order) == {}
    assert_stock_consistent()
    assert not Shipment.objects.filter(order=order).exists()
    # The customer is told and the authorization voided, through the outbox.
    queued = OutboxMessage.objects.filter(topic="order.cancelled", status="pending")
    assert sorted(queued.values_list("handler", flat=True)) == [
        "notifications.order_status_email",
        "payments.void_for_order",
    ]
    assert all(m.payload["order_id"] == str(order.pk) for m in queued)


# Unreachable.


def test_warehouse_error_keeps_the_request_pending_and_the_retry_reuses_its_key(fakes):
    fake = fakes()
    warehouse = served_by(fake)
    order = confirmed_order([(product_at({warehouse: 5}), 1)])
    fake.configure(mode="error500", count=1)

    with pytest.raises(WarehousesUnavailable):
        order_route(order_id=order.pk)

    request = FulfilmentRequest.objects.get(order=order)
    assert request.status == FulfilmentRequest.Status.PENDING
    assert request.attempts == 1
    assert request.last_error.startswith("WarehouseUnavailable: 500")
    assert status_of(order) == OrderStatus.CONFIRMED

    order_route(order_id=order.pk)

    request.refresh_from_db()
    assert (request.status, request.attempts) == ("accepted", 2)
    keys = [r["idempotency_key"] for r in fake.requests()]
    assert keys == [request.idempotency_key, request.idempotency_key]
    assert status_of(order) == OrderStatus.ROUTED


def test_hung_warehouse_is_asked_again_with_the_same_key_and_ships_once(fakes, settings):
    settings.FULFILMENT_READ_TIMEOUT_SECONDS = 0.3
    fake = fakes()
    warehouse = served_by(fake)
    order = confirmed_order([(product_at({warehouse: 5}), 1)])
    fake.configure(mode="hang", count=1)

    with pytest.raises(WarehousesUnavailable):
        order_route(order_id=order.pk)

    request = FulfilmentRequest.objects.get(order=order)
    assert request.status == FulfilmentRequest.Status.PENDING
    assert request.last_error.startswith("WarehouseOutcomeUnknown")
    # The warehouse did take it: the retry must not make a second shipment.
    assert len(fake.shipments()) == 1

    order_route(order_id=order.pk)

    first, retry = fake.requests()
    assert first["idempotency_key"] == retry["idempotency_key"] == request.idempotency_key
    assert retry["duplicate"] is True
    assert len(fake.shipments()) == 1
    assert Shipment.objects.get(order=order).reference == fake.shipments()[0]["shipment_reference"]
    assert status_of(order) == OrderStatus.ROUTED


def test_open_breaker_stops_calls_to_that_warehouse_only(fakes, settings):
    settings.WAREHOUSE_BREAKER_FAIL_MAX = 2
    settings.WAREHOUSE_BREAKER_RESET_SECONDS = 1
    circuit_breakers_reset()
    failing_fake, healthy_fake = fakes(), fakes()
    failing, healthy = served_by(failing_fake), served_by(healthy_fake)
    order = confirmed_order([(product_at({failing: 5}), 1)])
    failing_fake.configure(mode="error500")

    for _ in range(2):
        with pytest.raises(WarehousesUnavailable):
            order_route(order_id=order.pk)
    assert len(failing_fake.requests()) == 2

    with pytest.raises(WarehousesUnavailable, match="open"):
        order_route(order_id=order.pk)

    assert len(failing_fake.requests()) == 2
    request = FulfilmentRequest.objects.get(order=order)
    assert request.status == FulfilmentRequest.Status.PENDING
    assert request.last_error.startswith("CircuitBreakerError")
    # Another warehouse's breaker is its own.
    other = confirmed_order([(product_at({healthy: 5}), 1)])
    order_route(order_id=other.pk)
    assert status_of(other) == OrderStatus.ROUTED

    # Once the reset timeout passed, one trial call goes out; it succeeds and closes it.
    failing_fake.configure(mode="accept")
    time.sleep(1.1)
    order_route(order_id=order.pk)

    assert len(failing_fake.requests()) == 3
    assert status_of(order) == OrderStatus.ROUTED


def test_warehouse_without_a_fulfilment_service_is_left_to_staff(fakes):
    manual = served_by(None)
    order = confirmed_order([(product_at({manual: 5}), 1)])

    order_route(order_id=order.pk)

    assert status_of(order) == OrderStatus.CONFIRMED
    assert not FulfilmentRequest.objects.filter(order=order).exists()
    assert not Shipment.objects.filter(order=order).exists()
    assert held_at(order) == {manual.code: 1}


def test_cancelled_order_is_not_routed(fakes):
    fake = fakes()
    warehouse = served_by(fake)
    order = confirmed_order([(product_at({warehouse: 5}), 1)])
    order_transition_by_name(order_id=order.pk, transition="cancel", actor=Actor.system())

    order_route(order_id=order.pk)

    assert fake.requests() == []
    assert not FulfilmentRequest.objects.filter(order=order).exists()


# Through the outbox.


def test_confirmation_routes_the_order_through_its_outbox_message_retrying_an_outage(
    fakes, smtp_backend, django_capture_on_commit_callbacks
):
    fake = fakes()
    warehouse = served_by(fake)
    product = product_at({warehouse: 5})
    fake.configure(mode="error500", count=1)

    with django_capture_on_commit_callbacks(execute=True):
        order = confirmed_order([(product, 1)])

    message = OutboxMessage.objects.get(handler="fulfilment.route_order")
    assert (message.status, message.attempts) == ("done", 2)
    assert [r["status"] for r in fake.requests()] == [500, 201]
    assert len({r["idempotency_key"] for r in fake.requests()}) == 1
    assert status_of(order) == OrderStatus.ROUTED
    assert len(smtp_backend.messages) == 1  # the confirmation email


def test_request_the_warehouse_cannot_verify_stays_pending(fakes):
    fake = fakes()
    warehouse = served_by(fake)
    order = confirmed_order([(product_at({warehouse: 5}), 1)])
    warehouse.fulfilment_secret = "another-secret"
    warehouse.save(update_fields=["fulfilment_secret"])

    with pytest.raises(WarehousesUnavailable, match="401"):
        order_route(order_id=order.pk)

    (seen,) = fake.requests()
    assert seen["signature_ok"] is False
    assert seen["signature_error"] == "forged"
    request = FulfilmentRequest.objects.get(order=order)
    assert request.status == FulfilmentRequest.Status.PENDING


def test_rejected_units_move_to_a_warehouse_not_yet_asked_for_this_order(fakes):
    fake_a, fake_b, fake_c = fakes(), fakes(), fakes()
    north, south = served_by(fake_a, priority=10), served_by(fake_b, priority=5)
    east = served_by(fake_c, priority=0)
    gear = product_at({north: 3})
    spring = product_at({south: 1})
    order = confirmed_order([(gear, 2), (spring, 1)])
    assert held_at(order) == {north.code: 2, south.code: 1}
    # Springs arrive at north and east after the order was placed; south cannot ship.
    stock_receive(spring, north, 5)
    stock_receive(spring, east, 5)
    fake_b.configure(mode="reject")

    order_route(order_id=order.pk)

    # North was asked for the gears only, so the spring must not be held there.
    assert [r["body"]["lines"] for r in fake_a.requests()] == [
        [{"sku": gear.sku, "name": gear.name, "quantity": 2}]
    ]
    assert [r["body"]["lines"] for r in fake_c.requests()] == [
        [{"sku": spring.sku, "name": spring.name, "quantity": 1}]
    ]
    assert held_at(order) == {north.code: 2, east.code: 1}
    assert_stock_consistent()
    assert status_of(order) == OrderStatus.ROUTED
