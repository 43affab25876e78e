"""Stock split over bucket rows: the totals, the ledger and the rules hold per bucket and
across buckets; a hot product sells out exactly under concurrent checkouts."""

from collections import Counter
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import Sum

from core.actors import Actor
from flows.cancel import order_cancel
from flows.place import OrderLineRequest, order_place
from inventory.errors import InsufficientStock, StockConflict
from inventory.models import Reservation, StockItem, StockMovement
from inventory.selectors import products_available, stock_ledger_totals
from inventory.services import (
    stock_adjust,
    stock_buckets_set,
    stock_plan,
    stock_rebalance,
    stock_return,
)
from tests.conftest import assert_stock_consistent, order_payload, stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory

ADDRESS = order_payload([])["shipping_address"]


def buckets_of(product: Any) -> list[StockItem]:
    return list(StockItem.objects.filter(product=product).order_by("warehouse_id", "bucket"))


def split(product: Any, warehouse: Any, buckets: int) -> list[StockItem]:
    return stock_buckets_set(
        sku=product.sku, warehouse_code=warehouse.code, buckets=buckets, actor=Actor.system()
    )


def place(customer: Any, sku: str, quantity: int) -> Any:
    return order_place(
        customer=customer,
        email="buyer@example.com",
        shipping_address=ADDRESS,
        lines=[OrderLineRequest(sku, quantity)],
        actor=Actor(user=customer),
    )


@pytest.mark.django_db
def test_splitting_spreads_units_through_rebalance_rows_that_sum_to_zero():
    # Given 10 units in one row
    product, warehouse = ProductFactory(), WarehouseFactory()
    stock_receive(product, warehouse, 10)

    # When the stock item is split over 4 buckets
    buckets = split(product, warehouse, 4)

    # Then the units are spread 3/3/2/2 by ledger rows summing to 0, totals unchanged
    assert [(b.bucket, b.on_hand, b.reserved) for b in buckets] == [
        (0, 3, 0),
        (1, 3, 0),
        (2, 2, 0),
        (3, 2, 0),
    ]
    moves = StockMovement.objects.filter(kind=StockMovement.Kind.REBALANCE)
    assert moves.count() == 4
    assert moves.aggregate(total=Sum("on_hand_delta"))["total"] == 0
    assert products_available(product_ids=[product.pk]) == {product.pk: 10}
    assert_stock_consistent()


@pytest.mark.django_db
def test_buckets_can_be_added_not_removed_and_the_command_rebalances(capsys):
    product, warehouse = ProductFactory(), WarehouseFactory()
    stock_receive(product, warehouse, 7)

    call_command("stock_buckets", product.sku, warehouse.code, "--buckets", "2")
    with pytest.raises(CommandError, match="added, not removed"):
        call_command("stock_buckets", product.sku, warehouse.code, "--buckets", "1")

    assert [b.on_hand for b in buckets_of(product)] == [4, 3]
    assert "bucket 1: on_hand 3, reserved 0" in capsys.readouterr().out


@pytest.mark.django_db
def test_receipts_spread_and_write_offs_take_from_the_fullest_buckets():
    product, warehouse = ProductFactory(), WarehouseFactory()
    split(product, warehouse, 4)

    # A receipt of 6 lands 2/2/1/1, and the returned item carries the totals
    item = stock_receive(product, warehouse, 6)
    assert (item.on_hand, item.reserved) == (6, 0)
    assert [b.on_hand for b in buckets_of(product)] == [2, 2, 1, 1]

    # A write-off of 5 takes from the buckets with the most unreserved units first
    item = stock_adjust(
        sku=product.sku,
        warehouse_code=warehouse.code,
        quantity=-5,
        reason="t",
        actor=Actor.system(),
    )
    assert item.on_hand == 1
    assert sum(b.on_hand for b in buckets_of(product)) == 1

    # More than the total unreserved is refused, and changes nothing
    with pytest.raises(StockConflict):
        stock_adjust(
            sku=product.sku,
            warehouse_code=warehouse.code,
            quantity=-2,
            reason="t",
            actor=Actor.system(),
        )
    assert sum(b.on_hand for b in buckets_of(product)) == 1
    assert_stock_consistent()


@pytest.mark.django_db
def test_last_units_scattered_over_buckets_are_sold_not_refused():
    # Given 3 units left, one in each of three buckets of four (one bucket empty)
    product, warehouse = ProductFactory(), WarehouseFactory()
    stock_receive(product, warehouse, 3)
    split(product, warehouse, 4)
    assert sorted(b.on_hand for b in buckets_of(product)) == [0, 1, 1, 1]
    customer = UserFactory()

    # When a checkout wants 2, every plan (whatever bucket it starts from) covers them
    for _ in range(20):
        plan = stock_plan(demand={product.pk: 2}, skus={product.pk: product.sku})
        assert sum(a.quantity for a in plan) == 2
        assert len({a.stock_item_id for a in plan}) == 2
    order = place(customer, product.sku, 2)

    # Then it holds units in two buckets, the last unit sells, and the next is refused
    assert Reservation.objects.filter(order_line__order=order).count() == 2
    place(customer, product.sku, 1)
    with pytest.raises(InsufficientStock):
        place(customer, product.sku, 1)
    assert_stock_consistent()


@pytest.mark.django_db
def test_cancel_gives_units_back_to_the_bucket_that_held_them():
    product, warehouse = ProductFactory(), WarehouseFactory()
    stock_receive(product, warehouse, 8)
    split(product, warehouse, 4)
    customer = UserFactory()
    order = place(customer, product.sku, 2)
    held = {r.stock_item_id: r.quantity for r in Reservation.objects.filter(status="held")}
    assert sum(held.values()) == 2
    assert {b.pk: b.reserved for b in buckets_of(product) if b.reserved} == held

    order_cancel(order_id=order.pk, actor=Actor(user=customer), reason="changed mind")

    assert all(b.reserved == 0 for b in buckets_of(product))
    releases = StockMovement.objects.filter(kind=StockMovement.Kind.RELEASE)
    assert {m.stock_item_id: -m.reserved_delta for m in releases} == held
    assert_stock_consistent()


@pytest.mark.django_db
def test_rebalance_keeps_held_units_in_place_and_the_ledger_equal_to_the_counters():
    product, warehouse = ProductFactory(), WarehouseFactory()
    stock_receive(product, warehouse, 9)
    split(product, warehouse, 3)
    customer = UserFactory()
    for _ in range(4):
        place(customer, product.sku, 1)
    before = {b.pk: b.reserved for b in buckets_of(product)}

    buckets = stock_rebalance(sku=product.sku, warehouse_code=warehouse.code, actor=Actor.system())

    assert {b.pk: b.reserved for b in buckets} == before
    spare = [b.on_hand - b.reserved for b in buckets]
    assert sum(spare) == 5
    assert max(spare) - min(spare) <= 1
    assert sum(b.on_hand for b in buckets) == 9
    ledger = stock_ledger_totals()
    assert sum(ledger[b.pk][0] for b in buckets) == 9
    assert_stock_consistent()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("buckets", [4, 8])
def test_concurrent_checkouts_of_a_hot_sku_sell_out_exactly(concurrently, buckets):
    # Given 24 units of one SKU split over N buckets, and 24 + 6 customers
    product, warehouse = ProductFactory(), WarehouseFactory()
    stock_receive(product, warehouse, 24)
    split(product, warehouse, buckets)
    customers = [UserFactory() for _ in range(30)]

    # When each wants one unit at the same moment
    results = concurrently([lambda c=c: place(c, product.sku, 1) for c in customers])

    # Then exactly 24 are placed (no unit is refused while one is left) and 6 refused
    kinds = Counter(type(r).__name__ for r in results)
    assert kinds == {"Order": 24, "InsufficientStock": 6}, results
    rows = buckets_of(product)
    assert len(rows) == buckets
    assert all(b.reserved == b.on_hand for b in rows)
    assert sum(b.reserved for b in rows) == 24
    # The checkouts spread over the buckets rather than all taking one row
    assert len({r.stock_item_id for r in Reservation.objects.all()}) == buckets
    assert_stock_consistent()


@pytest.mark.django_db(transaction=True)
def test_as_many_concurrent_checkouts_as_units_all_succeed(concurrently):
    # Given 20 units over 4 buckets and exactly 20 checkouts of one unit each
    product, warehouse = ProductFactory(), WarehouseFactory()
    stock_receive(product, warehouse, 20)
    split(product, warehouse, 4)
    customers = [UserFactory() for _ in range(20)]

    results = concurrently([lambda c=c: place(c, product.sku, 1) for c in customers])

    # Then none is refused: a short bucket falls back to the others
    assert Counter(type(r).__name__ for r in results) == {"Order": 20}, results
    assert sum(b.reserved for b in buckets_of(product)) == 20
    assert_stock_consistent()


@pytest.mark.django_db
def test_a_return_to_a_split_stock_item_lands_in_bucket_0_and_the_totals_add_up():
    product, warehouse = ProductFactory(), WarehouseFactory()
    stock_receive(product, warehouse, 4)
    split(product, warehouse, 4)

    with transaction.atomic():
        stock_return(
            product_id=product.pk,
            warehouse_id=warehouse.pk,
            quantity=3,
            actor=Actor.system(),
            reason="returned",
        )

    assert [b.on_hand for b in buckets_of(product)] == [4, 1, 1, 1]
    assert products_available(product_ids=[product.pk]) == {product.pk: 7}
    assert_stock_consistent()
