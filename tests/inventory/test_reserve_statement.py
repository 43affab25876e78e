"""stock_reserve is one statement: a plan that a concurrent checkout made stale writes no
reservation and no ledger row, and the caller's rollback undoes the counters it took."""

import pytest
from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from flows.place import OrderLineRequest, order_place
from inventory.allocation import Allocation
from inventory.errors import ReservationRaceLost
from inventory.models import Reservation, StockItem, StockMovement
from inventory.services import ReservationRequest, stock_reserve
from tests.conftest import assert_stock_consistent, order_payload, stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory


@pytest.mark.django_db
def test_a_stale_plan_reserves_nothing_on_any_row():
    # Given two products with 5 units each, and an order for 1 of each
    warehouse = WarehouseFactory()
    pen, ink = ProductFactory(), ProductFactory()
    pen_item = stock_receive(pen, warehouse, 5)
    ink_item = stock_receive(ink, warehouse, 5)
    customer = UserFactory()
    order = order_place(
        customer=customer,
        email="ada@example.com",
        shipping_address=order_payload([])["shipping_address"],
        lines=[OrderLineRequest(pen.sku, 1), OrderLineRequest(ink.sku, 1)],
        actor=Actor(user=customer),
    )
    lines = {line.product_id: line for line in order.lines.all()}
    before = (Reservation.objects.count(), StockMovement.objects.count())

    # When a plan wants 2 pens (still there) and 5 inks (only 4 left: a lost race)
    plan = [
        Allocation(product_id=pen.pk, stock_item_id=pen_item.pk, warehouse_id=warehouse.pk,
                   quantity=2),
        Allocation(product_id=ink.pk, stock_item_id=ink_item.pk, warehouse_id=warehouse.pk,
                   quantity=5),
    ]  # fmt: skip
    with transaction.atomic():
        with pytest.raises(ReservationRaceLost):
            stock_reserve(
                requests=[
                    ReservationRequest(lines[p.pk].pk, p.pk, p.sku, q)
                    for p, q in ((pen, 2), (ink, 5))
                ],
                plan=plan,
                expires_at=timezone.now(),
                actor=Actor(user=customer),
            )
        # Then (before the caller rolls back) no reservation or ledger row was written
        assert (Reservation.objects.count(), StockMovement.objects.count()) == before
        assert StockItem.objects.get(pk=ink_item.pk).reserved == 1
        transaction.set_rollback(True)

    # And after it, the counters are as they were and agree with the ledger
    assert (Reservation.objects.count(), StockMovement.objects.count()) == before
    assert StockItem.objects.get(pk=pen_item.pk).reserved == 1
    assert StockItem.objects.get(pk=ink_item.pk).reserved == 1
    assert_stock_consistent()
