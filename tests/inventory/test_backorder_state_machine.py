"""Random sequences of backorder use cases keep the promises on real PostgreSQL.

A Hypothesis state machine drives checkouts of products that allow backorders (some
with stock, some without), payments authorized, receipts at two warehouses (with the
worker's consumer run after each), cancellations and expiries. After every step: each
product's backordered counter is its open claims' units and within its limit; every
live order holds or waits for exactly its quantity; the stock counters, held
reservations and ledger agree; an authorized order awaits stock exactly while it has
units waiting; and a product's queue is served oldest first (units went to a prefix of
its claims in order of arrival). Each run works on its own rows and is rolled back.
"""

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, QuerySet, Sum
from django.utils import timezone
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from core.actors import Actor
from core.models import OutboxMessage
from core.outbox import outbox_handle
from flows.cancel import order_cancel
from flows.expire import orders_expire_overdue
from flows.place import OrderLineRequest, order_place
from flows.transitions import order_transition_by_name
from inventory.errors import InsufficientStock
from inventory.models import BackorderClaim, Product, Reservation, StockItem, Warehouse
from inventory.services import stock_adjust
from orders.errors import InvalidTransition
from orders.models import Order
from orders.states import OrderStatus
from tests.conftest import assert_stock_consistent, order_payload

S = OrderStatus
ADDRESS = order_payload([])["shipping_address"]
LIVE = frozenset({S.PENDING_PAYMENT, S.AWAITING_STOCK, S.CONFIRMED})


def units(queryset: QuerySet[BackorderClaim]) -> int:
    return queryset.aggregate(units=Sum(F("quantity") - F("allocated")))["units"] or 0


class Backorders(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.run_atomic = transaction.atomic()
        self.run_atomic.__enter__()
        self.suffix = uuid.uuid4().hex[:10]
        self.customer = User.objects.create(username=f"bo-{self.suffix}")
        self.products: list[Product] = []
        self.warehouses: list[Warehouse] = []
        self.orders: list[uuid.UUID] = []
        # The units each order asked for, by product index.
        self.quantities: dict[uuid.UUID, dict[int, int]] = {}

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.run_atomic.__exit__(None, None, None)

    @initialize(
        limits=st.lists(st.integers(1, 6), min_size=2, max_size=2),
        opening=st.lists(st.integers(0, 3), min_size=2, max_size=2),
    )
    def create_catalogue(self, limits: list[int], opening: list[int]) -> None:
        self.warehouses = [
            Warehouse.objects.create(code=f"bo-{self.suffix}-{index}", name=f"BO {index}")
            for index in range(2)
        ]
        self.products = [
            Product.objects.create(
                sku=f"BO-{self.suffix}-{index}",
                name=f"BO product {index}",
                price=100,
                currency="EUR",
                backorder_limit=limit,
            )
            for index, limit in enumerate(limits)
        ]
        for product, quantity in zip(self.products, opening, strict=True):
            if quantity:
                self._receive(product, self.warehouses[0], quantity)

    # Helpers

    def _receive(self, product: Product, warehouse: Warehouse, quantity: int) -> None:
        stock_adjust(
            sku=product.sku,
            warehouse_code=warehouse.code,
            quantity=quantity,
            reason="delivery",
            actor=Actor.system(),
        )

    def _run_consumers(self) -> None:
        for message_id in OutboxMessage.objects.filter(
            topic="stock.received", status=OutboxMessage.Status.PENDING
        ).values_list("pk", flat=True):
            outbox_handle(message_id)

    def _status(self, order_id: uuid.UUID) -> str:
        return str(Order.objects.values_list("status", flat=True).get(pk=order_id))

    def _waiting(self, order_id: uuid.UUID) -> int:
        return units(
            BackorderClaim.objects.filter(
                order_line__order_id=order_id, status=BackorderClaim.Status.OPEN
            )
        )

    def _held(self, order_id: uuid.UUID) -> int:
        return (
            Reservation.objects.filter(
                order_line__order_id=order_id, status=Reservation.Status.HELD
            ).aggregate(units=Sum("quantity"))["units"]
            or 0
        )

    def _room(self, product: Product) -> int:
        """What a checkout of the product can take now: stock plus backorder room."""
        product.refresh_from_db()
        available = sum(
            item.on_hand - item.reserved for item in StockItem.objects.filter(product=product)
        )
        return available + product.backorder_limit - product.backordered

    # Rules

    @rule(
        product_index=st.integers(0, 1),
        other=st.integers(0, 2),
        quantity=st.integers(1, 4),
    )
    def checkout(self, product_index: int, other: int, quantity: int) -> None:
        lines = {product_index: quantity}
        if other < 2 and other != product_index:
            lines[other] = 1
        fits = all(self._room(self.products[i]) >= qty for i, qty in lines.items())
        try:
            with transaction.atomic():
                order = order_place(
                    customer=self.customer,
                    email="bo@example.com",
                    shipping_address=ADDRESS,
                    lines=[
                        OrderLineRequest(sku=self.products[i].sku, quantity=qty)
                        for i, qty in lines.items()
                    ],
                    actor=Actor.system(),
                )
        except InsufficientStock:
            assert not fits, lines
            return
        assert fits, lines
        self.orders.append(order.pk)
        self.quantities[order.pk] = lines

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def authorize(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(self.orders))
        before = self._status(order_id)
        try:
            with transaction.atomic():
                order_transition_by_name(
                    order_id=order_id, transition="confirm", actor=Actor.system()
                )
        except InvalidTransition:
            assert before != S.PENDING_PAYMENT
            return
        expected = S.AWAITING_STOCK if self._waiting(order_id) else S.CONFIRMED
        assert self._status(order_id) == expected

    @rule(
        product_index=st.integers(0, 1),
        warehouse_index=st.integers(0, 1),
        quantity=st.integers(1, 5),
    )
    def receive(self, product_index: int, warehouse_index: int, quantity: int) -> None:
        product, warehouse = self.products[product_index], self.warehouses[warehouse_index]
        self._receive(product, warehouse, quantity)
        self._run_consumers()
        # Units left unreserved at the warehouse only once no claim waits for them.
        if BackorderClaim.objects.filter(
            product=product, status=BackorderClaim.Status.OPEN
        ).exists():
            item = StockItem.objects.get(product=product, warehouse=warehouse)
            assert item.on_hand == item.reserved, item

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(self.orders))
        before = self._status(order_id)
        try:
            with transaction.atomic():
                order_cancel(order_id=order_id, actor=Actor.system(), reason="changed mind")
        except InvalidTransition:
            assert before not in LIVE
            return
        assert (self._held(order_id), self._waiting(order_id)) == (0, 0)

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(self.orders))
        before = self._status(order_id)
        Order.objects.filter(pk=order_id).update(reservation_expires_at=timezone.now())
        orders_expire_overdue(now=timezone.now() + timedelta(seconds=1))
        if before == S.PENDING_PAYMENT:
            assert self._status(order_id) == S.EXPIRED
            assert (self._held(order_id), self._waiting(order_id)) == (0, 0)
        else:
            # Awaiting stock (or any other state): the expiry leaves it alone.
            assert self._status(order_id) == before

    # Invariants

    @invariant()
    def counters_match_open_claims_within_limits(self) -> None:
        for product in self.products:
            product.refresh_from_db()
            open_claims = BackorderClaim.objects.filter(
                product=product, status=BackorderClaim.Status.OPEN
            )
            assert product.backordered == units(open_claims), product
            assert 0 <= product.backordered <= product.backorder_limit, product

    @invariant()
    def live_orders_hold_or_wait_for_exactly_their_quantity(self) -> None:
        for order_id in self.orders:
            status = self._status(order_id)
            if status in LIVE:
                wanted = sum(self.quantities[order_id].values())
                assert self._held(order_id) + self._waiting(order_id) == wanted, status
            else:
                assert self._waiting(order_id) == 0, status
            if status == S.AWAITING_STOCK:
                assert self._waiting(order_id) > 0
            if status == S.CONFIRMED:
                assert self._waiting(order_id) == 0

    @invariant()
    def queues_are_served_oldest_first(self) -> None:
        """Units went to claims in order of arrival: past the first claim still waiting
        for units, no (unreleased) claim got any."""
        for product in self.products:
            claims = list(
                BackorderClaim.objects.filter(product=product)
                .exclude(status=BackorderClaim.Status.RELEASED)
                .order_by("pk")
                .values_list("allocated", "quantity")
            )
            first_short = next(
                (index for index, (got, wanted) in enumerate(claims) if got < wanted),
                len(claims),
            )
            assert all(got == 0 for got, _ in claims[first_short + 1 :]), claims

    @invariant()
    def stock_books_agree(self) -> None:
        if self.products:
            assert_stock_consistent(
                list(
                    StockItem.objects.filter(product__in=self.products).values_list("pk", flat=True)
                )
            )


@pytest.mark.django_db
def test_backorders_keep_their_promises_under_random_use_case_sequences():
    run_state_machine_as_test(
        Backorders,
        settings=settings(max_examples=30, stateful_step_count=25, deadline=None, database=None),
    )
