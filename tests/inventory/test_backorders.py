"""Backorders on real PostgreSQL: a product takes checkouts beyond its stock up to its
limit, the claims wait in order of arrival, receipts cover them oldest first and move
the paid orders on; concurrent checkouts and receipts never break the limit or promise
a unit twice."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from core.actors import Actor
from core.models import OutboxMessage
from core.outbox import outbox_handle
from flows.cancel import order_cancel
from flows.edit import order_edit_commit, order_edit_propose
from flows.expire import orders_expire_overdue
from flows.place import OrderLineRequest, order_place
from flows.transitions import order_transition_by_name
from inventory.errors import InsufficientStock
from inventory.models import BackorderClaim, Product, Reservation
from inventory.services import stock_adjust, stock_return
from orders.models import Order, OrderEvent, OrderStatusChange
from orders.states import OrderStatus
from tests.conftest import assert_stock_consistent, run_concurrently, stock_receive
from tests.factories import ProductFactory, StaffFactory, UserFactory, WarehouseFactory

ADDRESS = {"name": "Ada", "line1": "1 Way", "city": "London", "postal_code": "N1", "country": "GB"}
PRODUCTS_URL = "/api/v1/products/"


def backorderable(*, on_hand: int, limit: int, warehouse: Any = None) -> Product:
    product = ProductFactory(backorder_limit=limit)
    if on_hand:
        stock_receive(product, warehouse or WarehouseFactory(), on_hand)
    return product


def place(product: Product, quantity: int) -> Order:
    return order_place(
        customer=UserFactory(),
        email="ada@example.com",
        shipping_address=ADDRESS,
        lines=[OrderLineRequest(sku=product.sku, quantity=quantity)],
        actor=Actor.system(),
    )


def authorize(order: Order) -> Order:
    """The payment outcome's confirm (staff confirm goes through the same step)."""
    return order_transition_by_name(order_id=order.pk, transition="confirm", actor=Actor.system())


def held(order: Order) -> int:
    return (
        Reservation.objects.filter(
            order_line__order=order, status=Reservation.Status.HELD
        ).aggregate(units=Sum("quantity"))["units"]
        or 0
    )


def waiting(order: Order) -> int:
    return (
        BackorderClaim.objects.filter(
            order_line__order=order, status=BackorderClaim.Status.OPEN
        ).aggregate(units=Sum(F("quantity") - F("allocated")))["units"]
        or 0
    )


def assert_backorders_consistent() -> None:
    """Each product's backordered counter is its open claims' units, within its limit;
    every line of a live order holds or waits for exactly its quantity."""
    for product in Product.objects.all():
        open_units = (
            BackorderClaim.objects.filter(
                product=product, status=BackorderClaim.Status.OPEN
            ).aggregate(units=Sum(F("quantity") - F("allocated")))["units"]
            or 0
        )
        assert product.backordered == open_units, product
        assert 0 <= product.backordered <= product.backorder_limit, product
    live = [OrderStatus.PENDING_PAYMENT, OrderStatus.AWAITING_STOCK, OrderStatus.CONFIRMED]
    for order in Order.objects.filter(status__in=live):
        assert held(order) + waiting(order) == sum(line.quantity for line in order.lines.all())
    assert_stock_consistent()


def run_receipt_consumers() -> None:
    """What the worker does with stock.received messages (the real handler)."""
    for message in OutboxMessage.objects.filter(
        topic="stock.received", status=OutboxMessage.Status.PENDING
    ).order_by("pk"):
        outbox_handle(message.pk)


def receive(product: Product, warehouse: Any, quantity: int) -> None:
    stock_adjust(
        sku=product.sku,
        warehouse_code=warehouse.code,
        quantity=quantity,
        reason="delivery",
        actor=Actor.system(),
    )


def status_of(order: Order) -> str:
    return str(Order.objects.get(pk=order.pk).status)


# Checkout --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_checkout_within_the_limit_holds_the_stock_and_claims_the_rest(
    customer_client, place_order
):
    # given 2 units on hand and room for 3 on backorder
    product = backorderable(on_hand=2, limit=3)

    # when a customer orders 4 through the API
    response = place_order(customer_client, [(product.sku, 4)])

    # then the order is accepted: 2 units held, 2 waiting as one claim
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["id"])
    assert (held(order), waiting(order)) == (2, 2)
    product.refresh_from_db()
    assert product.backordered == 2
    # and the product API shows what may still be backordered
    listed = customer_client.get(f"{PRODUCTS_URL}{product.sku}/").json()
    assert (listed["available"], listed["allows_backorder"], listed["backorder_available"]) == (
        0,
        True,
        1,
    )
    assert_backorders_consistent()


@pytest.mark.django_db
def test_checkout_beyond_the_limit_is_refused_and_changes_nothing(customer_client, place_order):
    # given 2 units on hand and room for 3 on backorder
    product = backorderable(on_hand=2, limit=3)

    # when a customer orders 6
    response = place_order(customer_client, [(product.sku, 6)])

    # then the usual insufficient-stock problem, and nothing was held or claimed
    assert response.status_code == 409, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "insufficient_stock"
    assert not Order.objects.exists()
    assert not BackorderClaim.objects.exists()
    product.refresh_from_db()
    assert product.backordered == 0
    assert_backorders_consistent()


@pytest.mark.django_db
def test_a_product_without_backorders_still_refuses_what_stock_cannot_cover():
    product = backorderable(on_hand=2, limit=0)

    with pytest.raises(InsufficientStock):
        place(product, 3)

    assert not BackorderClaim.objects.exists()


@pytest.mark.django_db
def test_with_no_stock_at_all_the_whole_line_is_claimed():
    product = backorderable(on_hand=0, limit=5)

    order = place(product, 5)

    assert (held(order), waiting(order)) == (0, 5)
    with pytest.raises(InsufficientStock):
        place(product, 1)
    assert_backorders_consistent()


# The order's state --------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_authorized_order_with_claims_awaits_stock_and_is_neither_routed_nor_expired():
    # given an order with 1 unit backordered
    product = backorderable(on_hand=1, limit=1)
    order = place(product, 2)

    # when its payment is authorized
    authorize(order)

    # then it awaits stock: audited, evented, and no routing asked for
    assert status_of(order) == OrderStatus.AWAITING_STOCK
    change = OrderStatusChange.objects.filter(order=order).last()
    assert change is not None
    assert (change.from_status, change.to_status, change.transition) == (
        "pending_payment",
        "awaiting_stock",
        "await_stock",
    )
    assert OrderEvent.objects.filter(order=order, type="order.awaiting_stock").count() == 1
    topics = set(OutboxMessage.objects.values_list("topic", flat=True))
    assert "order.awaiting_stock" in topics
    assert "order.confirmed" not in topics
    # and its reservation running out does not expire it
    Order.objects.filter(pk=order.pk).update(reservation_expires_at=timezone.now())
    assert orders_expire_overdue(now=timezone.now() + timedelta(seconds=1)) == 0
    assert status_of(order) == OrderStatus.AWAITING_STOCK
    assert_backorders_consistent()


@pytest.mark.django_db
def test_an_unpaid_order_with_claims_expires_and_releases_them():
    # given an unpaid order with 3 units backordered
    product = backorderable(on_hand=1, limit=3)
    order = place(product, 4)

    # when its reservation runs out
    Order.objects.filter(pk=order.pk).update(reservation_expires_at=timezone.now())
    expired = orders_expire_overdue(now=timezone.now() + timedelta(seconds=1))

    # then it expired, and its held units and its place in the queue are given back
    assert expired == 1
    assert status_of(order) == OrderStatus.EXPIRED
    assert (held(order), waiting(order)) == (0, 0)
    assert BackorderClaim.objects.get().status == BackorderClaim.Status.RELEASED
    product.refresh_from_db()
    assert product.backordered == 0
    assert_backorders_consistent()


@pytest.mark.django_db
def test_cancelling_an_order_awaiting_stock_releases_its_stock_and_claims():
    # given a customer's authorized order with 2 units backordered
    customer = UserFactory()
    product = backorderable(on_hand=1, limit=2)
    order = order_place(
        customer=customer,
        email="ada@example.com",
        shipping_address=ADDRESS,
        lines=[OrderLineRequest(sku=product.sku, quantity=3)],
        actor=Actor.system(),
    )
    authorize(order)

    # when it is cancelled
    order_cancel(order_id=order.pk, actor=Actor.system(), reason="changed my mind")

    # then stock and queue are released, and the authorization's void is on its way
    assert status_of(order) == OrderStatus.CANCELLED
    assert (held(order), waiting(order)) == (0, 0)
    product.refresh_from_db()
    assert product.backordered == 0
    assert OutboxMessage.objects.filter(
        topic="order.cancelled", handler="payments.void_for_order"
    ).exists()
    # and a receipt afterwards leaves the units unreserved
    warehouse = product.stock_items.get().warehouse
    receive(product, warehouse, 2)
    run_receipt_consumers()
    assert held(order) == 0
    assert_backorders_consistent()


@pytest.mark.django_db
def test_units_a_cancel_releases_go_to_the_waiting_queue_before_new_checkouts():
    # given 2 units held by a paid order and a later order waiting for 2 of them
    warehouse = WarehouseFactory()
    product = backorderable(on_hand=2, limit=5, warehouse=warehouse)
    holder = authorize(place(product, 2))
    waiter = authorize(place(product, 2))
    released = OutboxMessage.objects.filter(
        topic="stock.received", dedup_key__contains="stock-released"
    )
    assert not released.exists()
    assert status_of(waiter) == OrderStatus.AWAITING_STOCK
    assert waiting(waiter) == 2

    # when the holder is cancelled and the worker handles the release's message
    order_cancel(order_id=holder.pk, actor=Actor.system(), reason="changed my mind")
    assert released.count() == 1
    run_receipt_consumers()

    # then the released units went to the waiting order, which is confirmed
    assert (held(waiter), waiting(waiter)) == (2, 0)
    assert status_of(waiter) == OrderStatus.CONFIRMED
    item = product.stock_items.get()
    assert (item.on_hand, item.reserved) == (2, 2)
    assert_backorders_consistent()


@pytest.mark.django_db
def test_a_release_without_a_waiting_queue_asks_for_no_allocation():
    product = backorderable(on_hand=3, limit=5)
    order = authorize(place(product, 2))
    order_cancel(order_id=order.pk, actor=Actor.system(), reason="changed my mind")
    assert not OutboxMessage.objects.filter(
        topic="stock.received", dedup_key__contains="stock-released"
    ).exists()
    assert_backorders_consistent()


# Receipts ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_receipt_covers_claims_oldest_first_and_confirms_the_covered_orders():
    # given no stock and three authorized orders waiting for 2, 3 and 1 units
    warehouse = WarehouseFactory()
    product = backorderable(on_hand=0, limit=10, warehouse=warehouse)
    first, second, third = (authorize(place(product, qty)) for qty in (2, 3, 1))
    assert {status_of(o) for o in (first, second, third)} == {OrderStatus.AWAITING_STOCK}

    # when 4 units arrive and the worker handles the receipt
    receive(product, warehouse, 4)
    run_receipt_consumers()

    # then the first order is covered and confirmed (and routing is asked for), the
    # second holds 2 of its 3 and still waits, the third waits for all of its unit
    assert status_of(first) == OrderStatus.CONFIRMED
    assert (held(first), waiting(first)) == (2, 0)
    assert (held(second), waiting(second)) == (2, 1)
    assert (held(third), waiting(third)) == (0, 1)
    assert status_of(second) == status_of(third) == OrderStatus.AWAITING_STOCK
    routing = OutboxMessage.objects.filter(
        topic="order.confirmed", handler="fulfilment.route_order"
    )
    assert [m.payload["order_id"] for m in routing] == [str(first.pk)]
    last = OrderStatusChange.objects.filter(order=first).last()
    assert last is not None
    assert (last.from_status, last.transition) == ("awaiting_stock", "stock_arrive")
    assert_backorders_consistent()

    # when 5 more arrive
    receive(product, warehouse, 5)
    run_receipt_consumers()

    # then the others are covered too and 3 units are left for new checkouts
    assert status_of(second) == status_of(third) == OrderStatus.CONFIRMED
    item = product.stock_items.get()
    assert (item.on_hand, item.reserved) == (9, 6)
    assert_backorders_consistent()
    # and handling the receipts again changes nothing
    for message in OutboxMessage.objects.filter(topic="stock.received"):
        OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxMessage.Status.PENDING)
    run_receipt_consumers()
    item.refresh_from_db()
    assert (item.on_hand, item.reserved) == (9, 6)
    assert_backorders_consistent()


@pytest.mark.django_db
def test_an_unpaid_order_whose_claims_were_covered_is_confirmed_when_paid():
    # given an unpaid order waiting for 2 units, which then arrive
    warehouse = WarehouseFactory()
    product = backorderable(on_hand=0, limit=2, warehouse=warehouse)
    order = place(product, 2)
    receive(product, warehouse, 2)
    run_receipt_consumers()
    assert status_of(order) == OrderStatus.PENDING_PAYMENT

    # when its payment is authorized
    authorize(order)

    # then it is confirmed at once
    assert status_of(order) == OrderStatus.CONFIRMED
    assert (held(order), waiting(order)) == (2, 0)


@pytest.mark.django_db
def test_a_new_checkout_does_not_take_received_units_ahead_of_the_queue():
    # given an order waiting for 3 units
    warehouse = WarehouseFactory()
    product = backorderable(on_hand=0, limit=3, warehouse=warehouse)
    waiting_order = authorize(place(product, 3))

    # when 3 arrive (before any worker ran) and another customer checks out
    receive(product, warehouse, 3)
    with pytest.raises(InsufficientStock):
        place(product, 4)
    newcomer = place(product, 1)

    # then the waiting order got them; the newcomer is queued behind it
    assert held(waiting_order) == 3
    assert (held(newcomer), waiting(newcomer)) == (0, 1)
    assert_backorders_consistent()


# Concurrency -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_checkouts_never_exceed_the_backorder_limit():
    # given 3 units on hand and room for 5 on backorder: 8 units in all
    product = backorderable(on_hand=3, limit=5)

    # when 12 checkouts of 2 units race
    results = run_concurrently([lambda: place(product, 2) for _ in range(12)])

    # then exactly 4 got in (8 units), the others were refused for stock
    placed = [r for r in results if isinstance(r, Order)]
    refused = [r for r in results if isinstance(r, InsufficientStock)]
    assert (len(placed), len(refused)) == (4, 8), results
    product.refresh_from_db()
    assert product.backordered == 5
    assert sum(held(order) for order in placed) == 3
    assert_backorders_consistent()


@pytest.mark.django_db(transaction=True)
def test_concurrent_receipts_never_allocate_a_unit_twice():
    # given 6 authorized orders each waiting for 2 units, and two warehouses
    east, west = WarehouseFactory(code="east"), WarehouseFactory(code="west")
    product = backorderable(on_hand=0, limit=12)
    orders = [authorize(place(product, 2)) for _ in range(6)]

    # when 8 receipts of 1 unit race, at both warehouses
    results = run_concurrently(
        [
            (
                lambda code=code: stock_adjust(
                    sku=product.sku,
                    warehouse_code=code,
                    quantity=1,
                    reason="delivery",
                    actor=Actor.system(),
                )
            )
            for code in ["east", "west"] * 4
        ]
    )
    assert not [r for r in results if isinstance(r, Exception)], results

    # then 8 units were allocated, each once, to the oldest claims first
    assert [held(order) for order in orders] == [2, 2, 2, 2, 0, 0]
    assert sum(item.reserved for item in product.stock_items.all()) == 8
    assert {item.warehouse for item in product.stock_items.all()} == {east, west}
    run_receipt_consumers()
    assert [status_of(order) for order in orders] == [OrderStatus.CONFIRMED] * 4 + [
        OrderStatus.AWAITING_STOCK
    ] * 2
    assert_backorders_consistent()


@pytest.mark.django_db
def test_a_returned_unit_put_back_on_the_shelf_goes_to_the_oldest_claim():
    # given an order waiting for 1 unit
    warehouse = WarehouseFactory()
    product = backorderable(on_hand=0, limit=1, warehouse=warehouse)
    order = authorize(place(product, 1))

    # when a return restocks 1 unit there and the worker handles it
    with transaction.atomic():
        stock_return(
            product_id=product.pk,
            warehouse_id=warehouse.pk,
            quantity=1,
            actor=Actor.system(),
            reason="return restock",
        )
    run_receipt_consumers()

    # then the waiting order got it and goes on
    assert (held(order), waiting(order)) == (1, 0)
    assert status_of(order) == OrderStatus.CONFIRMED
    assert_backorders_consistent()


# Edits and the admin ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_edit_that_shrinks_a_backordered_line_gives_up_its_claim_and_holds_from_stock():
    # given 3 units on hand and an unpaid order of 5 (3 held, 2 waiting)
    product = backorderable(on_hand=3, limit=2)
    order = place(product, 5)

    # when the customer edits the line down to 3
    edit = order_edit_propose(
        order_id=order.pk, lines={product.sku: 3}, shipping_address=None, actor=Actor.system()
    )
    order_edit_commit(order_id=order.pk, edit_id=edit.pk, actor=Actor.system())

    # then the 3 are held from stock and nothing waits any more
    assert (held(order), waiting(order)) == (3, 0)
    product.refresh_from_db()
    assert product.backordered == 0
    assert_backorders_consistent()


@pytest.mark.django_db
def test_staff_set_the_backorder_limit_in_the_admin_but_not_below_what_is_backordered(client):
    # given a product with 2 units on backorder and a superuser
    product = backorderable(on_hand=0, limit=4)
    place(product, 2)
    client.force_login(StaffFactory(is_superuser=True))
    url = f"/admin/inventory/product/{product.pk}/change/"
    form = {
        "sku": product.sku,
        "name": product.name,
        "price": product.price,
        "currency": product.currency,
        "is_active": "on",
        "low_stock_threshold": 0,
    }

    # when they lower the limit below 2, then to 2
    refused = client.post(url, {**form, "backorder_limit": 1})
    accepted = client.post(url, {**form, "backorder_limit": 2})

    # then the first is a form error and the second is saved
    assert refused.status_code == 200
    assert "2 units are on backorder now" in refused.content.decode()
    assert accepted.status_code == 302, accepted.content.decode()[:2000]
    product.refresh_from_db()
    assert (product.backorder_limit, product.backordered) == (2, 2)
