"""Random sequences of stock and order use cases keep the stock books straight.

A Hypothesis state machine drives the services (adjustments, checkouts, order edits,
payment failures and retries, confirm/route/ship, cancellations, expiries, returns
restocked or disposed of, and partial shipments: routed to a fake warehouse over HTTP,
shipped some units at a time, then the rest shipped or cancelled) against real
PostgreSQL and keeps a small model of what must be true. After every step the
counters, the held reservations, the ledger, the model and the order history agree.
Each run works on its own uniquely named warehouses and products and is rolled back.
"""

import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import event, settings
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
from core.idempotency import CompletedKey
from fakes.warehouse import FakeWarehouse
from flows.api.serializers import OrderOutputSerializer
from flows.cancel import order_cancel, order_cancel_rest
from flows.edit import order_edit_commit, order_edit_propose
from flows.expire import orders_expire_overdue
from flows.place import OrderLineRequest, order_place, order_place_written
from flows.returns import (
    ReturnLineRequest,
    return_authorize,
    return_open,
    return_receive,
    return_refund,
)
from flows.routing import order_route
from flows.ship import order_ship_when_shipments_left
from flows.transitions import order_transition_by_name
from flows.warehouse_reports import shipment_report_apply
from fulfilment.errors import OrderAtWarehouse
from fulfilment.models import Shipment
from fulfilment.services import shipment_unshipped
from inventory.errors import InsufficientStock, StockConflict
from inventory.models import Product, Reservation, StockItem, StockMovement, Warehouse
from inventory.services import stock_adjust, stock_buckets_set, stock_rebalance
from orders.errors import (
    InvalidTransition,
    OrderEditInvalid,
    OrderEditNeedsReauthorization,
    OrderNotEditable,
    ReturnExceedsShipped,
    ReturnNotReturnable,
)
from orders.models import Order, OrderEdit, OrderStatusChange
from orders.states import OrderStatus
from tests.conftest import order_payload
from tests.support.fake_warehouse import FAST, WAREHOUSE_SECRET

S = OrderStatus
# The order state machine as the domain defines it: transition -> (sources, target).
MACHINE: dict[str, tuple[frozenset[str], str]] = {
    "confirm": (frozenset({S.PENDING_PAYMENT}), S.CONFIRMED),
    "fail_payment": (frozenset({S.PENDING_PAYMENT}), S.PAYMENT_FAILED),
    "retry_payment": (frozenset({S.PAYMENT_FAILED}), S.PENDING_PAYMENT),
    "expire": (frozenset({S.PENDING_PAYMENT, S.PAYMENT_FAILED}), S.EXPIRED),
    "cancel": (
        frozenset({S.PENDING_PAYMENT, S.PAYMENT_FAILED, S.CONFIRMED, S.ROUTED}),
        S.CANCELLED,
    ),
    "route": (frozenset({S.CONFIRMED}), S.ROUTED),
    "ship": (frozenset({S.ROUTED}), S.SHIPPED),
    "deliver": (frozenset({S.SHIPPED}), S.DELIVERED),
    "refund": (frozenset({S.SHIPPED, S.DELIVERED, S.PARTIALLY_RETURNED}), S.REFUNDED),
    # Taken only by a refunded return (flows.returns), never by name.
    "return_partially": (frozenset({S.SHIPPED, S.DELIVERED}), S.PARTIALLY_RETURNED),
    "return_fully": (frozenset({S.SHIPPED, S.DELIVERED, S.PARTIALLY_RETURNED}), S.RETURNED),
}
RETURNABLE = frozenset({S.SHIPPED, S.DELIVERED, S.PARTIALLY_RETURNED})
EDGES = {
    ("", S.PENDING_PAYMENT, "place"),
    *((source, target, name) for name, (sources, target) in MACHINE.items() for source in sources),
}
# Taken only when a warehouse reports part of an order shipped (flows.warehouse_reports),
# then once the rest shipped or was cancelled (the `ship_in_parts` rule).
PARTIAL_SHIPMENT_EDGES = {
    (S.ROUTED, S.PARTIALLY_SHIPPED, "ship_partially"),
    (S.PARTIALLY_SHIPPED, S.SHIPPED, "ship"),
}
# Taken only for orders with backordered units (flows.payment_outcomes, flows.backorders;
# tests/inventory/test_backorder_state_machine.py), which this machine does not play.
BACKORDER_EDGES = {
    (S.PENDING_PAYMENT, S.AWAITING_STOCK, "await_stock"),
    (S.AWAITING_STOCK, S.CONFIRMED, "stock_arrive"),
    (S.AWAITING_STOCK, S.CANCELLED, "cancel"),
}
EDGES |= PARTIAL_SHIPMENT_EDGES
# Orders whose stock is held (less what partial reports shipped); shipped ones have
# committed it (less a cancelled rest, released), the rest released it.
HOLDING = frozenset(
    {S.PENDING_PAYMENT, S.PAYMENT_FAILED, S.CONFIRMED, S.ROUTED, S.PARTIALLY_SHIPPED}
)
EDITABLE = frozenset({S.PENDING_PAYMENT, S.PAYMENT_FAILED, S.CONFIRMED})
SHIPPED = frozenset({S.SHIPPED, S.DELIVERED, S.REFUNDED, S.PARTIALLY_RETURNED, S.RETURNED})
ADDRESS = order_payload([])["shipping_address"]
# The next step of an order that goes well.
HAPPY_PATH: dict[str, str] = {
    S.PENDING_PAYMENT: "confirm",
    S.CONFIRMED: "route",
    S.ROUTED: "ship",
    S.SHIPPED: "deliver",
    S.DELIVERED: "refund",
}

Key = tuple[int, int]  # (product index, warehouse index)


class StockAndOrders(RuleBasedStateMachine):
    # Bucket rows per stock item (product x warehouse); the model tracks their totals.
    BUCKETS = 1
    # The warehouse service orders are routed to over HTTP (set by the test).
    fake_warehouse: FakeWarehouse | None = None

    def __init__(self) -> None:
        super().__init__()
        # A savepoint per run: teardown rolls the run's rows back.
        self.run_atomic = transaction.atomic()
        self.run_atomic.__enter__()
        suffix = uuid.uuid4().hex[:10]
        self.customer = User.objects.create(username=f"sm-{suffix}")
        self.suffix = suffix
        self.products: list[Product] = []
        self.warehouses: list[Warehouse] = []
        self.on_hand: dict[Key, int] = defaultdict(int)
        self.reserved: dict[Key, int] = defaultdict(int)
        self.orders: list[uuid.UUID] = []
        self.status: dict[uuid.UUID, str] = {}
        self.lines: dict[uuid.UUID, dict[int, int]] = {}
        # Units of each order's lines in (refunded) returns, by product index.
        self.returned: dict[uuid.UUID, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        # What each order holds per stock position (learned from its reservations).
        self.holds: dict[uuid.UUID, dict[Key, int]] = {}
        # Units of each order's lines released by edits (lines that shrank or went).
        self.edit_released: dict[uuid.UUID, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        # Units of each order's lines shipped by partial reports, and released when the
        # rest of the order was cancelled, by product index.
        self.shipped: dict[uuid.UUID, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.rest_released: dict[uuid.UUID, dict[int, int]] = defaultdict(lambda: defaultdict(int))

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.run_atomic.__exit__(None, None, None)

    @initialize(
        priorities=st.lists(st.integers(0, 3), min_size=2, max_size=3),
        sku_count=st.integers(2, 3),
        receipts=st.lists(st.integers(0, 8), min_size=9, max_size=9),
    )
    def create_catalogue(self, priorities: list[int], sku_count: int, receipts: list[int]) -> None:
        self.warehouses = [
            Warehouse.objects.create(
                code=f"sm-{self.suffix}-{index}",
                name=f"SM {index}",
                priority=priority,
                fulfilment_url=self.fake_warehouse.requests_url if self.fake_warehouse else "",
                fulfilment_secret=WAREHOUSE_SECRET,
            )
            for index, priority in enumerate(priorities)
        ]
        self.products = [
            Product.objects.create(
                sku=f"SM-{self.suffix}-{index}",
                name=f"SM product {index}",
                price=100 * (index + 1),
                currency="EUR",
            )
            for index in range(sku_count)
        ]
        for product_index, product in enumerate(self.products):
            for warehouse_index, warehouse in enumerate(self.warehouses):
                quantity = receipts[product_index * 3 + warehouse_index]
                if quantity:
                    stock_adjust(
                        sku=product.sku,
                        warehouse_code=warehouse.code,
                        quantity=quantity,
                        reason="opening stock",
                        actor=Actor.system(),
                    )
                    self.on_hand[(product_index, warehouse_index)] = quantity
                if self.BUCKETS > 1:
                    stock_buckets_set(
                        sku=product.sku,
                        warehouse_code=warehouse.code,
                        buckets=self.BUCKETS,
                        actor=Actor.system(),
                    )

    # Helpers

    def key_of(self, stock_item: StockItem) -> Key:
        return (
            [p.pk for p in self.products].index(stock_item.product_id),
            [w.pk for w in self.warehouses].index(stock_item.warehouse_id),
        )

    def available(self, product_index: int) -> int:
        return sum(
            self.on_hand[(product_index, w)] - self.reserved[(product_index, w)]
            for w in range(len(self.warehouses))
        )

    def pick_order(self, index: int) -> uuid.UUID:
        return self.orders[index % len(self.orders)]

    def release(self, order_id: uuid.UUID, *, ships: bool) -> None:
        for key, quantity in self.holds.pop(order_id, {}).items():
            self.reserved[key] -= quantity
            if ships:
                self.on_hand[key] -= quantity

    def apply_transition(self, order_id: uuid.UUID, name: str) -> None:
        sources, target = MACHINE[name]
        actor = Actor(user=self.customer) if name == "cancel" else Actor.system()
        if self.status[order_id] not in sources:
            with pytest.raises(InvalidTransition):
                order_transition_by_name(order_id=order_id, transition=name, actor=actor)
            return
        order = order_transition_by_name(order_id=order_id, transition=name, actor=actor)
        assert order.status == target
        self.status[order_id] = target
        if name in ("cancel", "expire"):
            self.release(order_id, ships=False)
        elif name == "ship":
            self.release(order_id, ships=True)

    # Rules

    @rule(
        product_index=st.integers(0, 2),
        warehouse_index=st.integers(0, 2),
        quantity=st.integers(-5, 6).filter(bool),
    )
    def adjust_stock(self, product_index: int, warehouse_index: int, quantity: int) -> None:
        product_index %= len(self.products)
        warehouse_index %= len(self.warehouses)
        key = (product_index, warehouse_index)
        call = {
            "sku": self.products[product_index].sku,
            "warehouse_code": self.warehouses[warehouse_index].code,
            "quantity": quantity,
            "reason": "state machine",
            "actor": Actor.system(),
        }
        if self.on_hand[key] + quantity < self.reserved[key]:
            with pytest.raises(StockConflict):
                stock_adjust(**call)
            return
        item = stock_adjust(**call)
        self.on_hand[key] += quantity
        assert (item.on_hand, item.reserved) == (self.on_hand[key], self.reserved[key])

    @precondition(lambda self: any(self.reserved.values()))
    @rule(position=st.integers(0, 100), excess=st.integers(0, 2))
    def write_off_around_reserved_units(self, position: int, excess: int) -> None:
        held = sorted(key for key, quantity in self.reserved.items() if quantity)
        product_index, warehouse_index = key = held[position % len(held)]
        quantity = -(self.on_hand[key] - self.reserved[key] + excess)
        if quantity == 0:
            return
        call = {
            "sku": self.products[product_index].sku,
            "warehouse_code": self.warehouses[warehouse_index].code,
            "quantity": quantity,
            "reason": "write-off",
            "actor": Actor.system(),
        }
        if excess:
            with pytest.raises(StockConflict):
                stock_adjust(**call)
            return
        item = stock_adjust(**call)
        self.on_hand[key] += quantity
        assert item.on_hand == item.reserved == self.reserved[key]

    @rule(
        wanted=st.dictionaries(st.integers(0, 2), st.integers(1, 3), min_size=1, max_size=3),
        in_one_statement=st.booleans(),
    )
    def checkout(self, wanted: dict[int, int], in_one_statement: bool) -> None:
        lines = {index % len(self.products): quantity for index, quantity in wanted.items()}
        call: dict[str, Any] = {
            "customer": self.customer,
            "email": "buyer@example.com",
            "shipping_address": ADDRESS,
            "lines": [
                OrderLineRequest(self.products[index].sku, quantity)
                for index, quantity in lines.items()
            ],
            "actor": Actor(user=self.customer),
        }
        short = sorted(
            self.products[index].sku
            for index, quantity in lines.items()
            if self.available(index) < quantity
        )
        event("checkout in one statement" if in_one_statement else "checkout, general path")
        if in_one_statement:
            # The API's checkout path (flows.api.views): the single statement, or nothing
            # written when it would fail (the general path then reports the error).
            completed = CompletedKey(
                user_id=self.customer.pk,
                key=uuid.uuid4().hex,
                method="POST",
                path="/api/v1/orders/",
                fingerprint="f" * 64,
                status=201,
            )
            body = order_place_written(
                **call, key=completed, render=OrderOutputSerializer().to_representation
            )
            assert (body is None) == bool(short)
        if short:
            with pytest.raises(InsufficientStock) as raised:
                order_place(**call)
            assert raised.value.extra["skus"] == short
            return
        if in_one_statement:
            assert body is not None
            order = Order.objects.get(pk=body["id"])
            assert body == OrderOutputSerializer(order).data
        else:
            order = order_place(**call)
        assert order.status == S.PENDING_PAYMENT
        holds: dict[Key, int] = defaultdict(int)
        for reservation in Reservation.objects.filter(order_line__order=order).select_related(
            "stock_item"
        ):
            holds[self.key_of(reservation.stock_item)] += reservation.quantity
        for key, quantity in holds.items():
            assert self.on_hand[key] - self.reserved[key] >= quantity
            self.reserved[key] += quantity
        self.orders.append(order.pk)
        self.status[order.pk] = S.PENDING_PAYMENT
        self.lines[order.pk] = lines
        self.holds[order.pk] = dict(holds)

    @precondition(lambda self: self.orders)
    @rule(
        order_index=st.integers(0, 100),
        wanted=st.dictionaries(st.integers(0, 2), st.integers(0, 9), min_size=1, max_size=3),
    )
    def edit(self, order_index: int, wanted: dict[int, int]) -> None:
        order_id = self.pick_order(order_index)
        old = self.lines[order_id]
        changes = {index % len(self.products): quantity for index, quantity in wanted.items()}
        changes = {i: q for i, q in changes.items() if q or old.get(i, 0)}
        new = {**old, **changes}
        call: dict[str, Any] = {
            "order_id": order_id,
            "lines": {self.products[i].sku: q for i, q in changes.items()},
            "shipping_address": None,
            "actor": Actor(user=self.customer),
        }
        if self.status[order_id] not in EDITABLE:
            with pytest.raises(OrderNotEditable):
                order_edit_propose(**call)
            return
        if not any(new.values()) or new == old:
            with pytest.raises(OrderEditInvalid):
                order_edit_propose(**call)
            return
        edit = order_edit_propose(**call)
        commit = {"order_id": order_id, "edit_id": edit.pk, "actor": call["actor"]}
        if edit.payment_action == OrderEdit.PaymentAction.REAUTHORIZE:
            assert self.status[order_id] == S.CONFIRMED
            with pytest.raises(OrderEditNeedsReauthorization):
                order_edit_commit(**commit)
            return
        # Lines that shrink give all their units back first, then hold the new quantity;
        # lines that grow hold the difference.
        shrinking = {i for i, q in new.items() if q < old.get(i, 0)}
        short = sorted(
            self.products[i].sku
            for i, q in new.items()
            if (q if i in shrinking else q - old.get(i, 0))
            > self.available(i) + (old[i] if i in shrinking else 0)
        )
        if short:
            with pytest.raises(InsufficientStock):
                order_edit_commit(**commit)
            return
        order_edit_commit(**commit)
        for i in shrinking:
            self.edit_released[order_id][i] += old[i]
        before = self.holds.pop(order_id, {})
        after: dict[Key, int] = defaultdict(int)
        for reservation in Reservation.objects.filter(
            order_line__order_id=order_id, status=Reservation.Status.HELD
        ).select_related("stock_item"):
            after[self.key_of(reservation.stock_item)] += reservation.quantity
        for key in set(before) | set(after):
            self.reserved[key] += after.get(key, 0) - before.get(key, 0)
        self.holds[order_id] = dict(after)
        self.lines[order_id] = new
        lines = Order.objects.get(pk=order_id).lines.all()
        assert {line.product_id: line.quantity for line in lines} == {
            self.products[i].pk: q for i, q in new.items()
        }

    @precondition(lambda self: self.BUCKETS > 1)
    @rule(product_index=st.integers(0, 2), warehouse_index=st.integers(0, 2))
    def rebalance(self, product_index: int, warehouse_index: int) -> None:
        product = self.products[product_index % len(self.products)]
        warehouse = self.warehouses[warehouse_index % len(self.warehouses)]
        key = (product_index % len(self.products), warehouse_index % len(self.warehouses))
        buckets = stock_rebalance(
            sku=product.sku, warehouse_code=warehouse.code, actor=Actor.system()
        )
        assert len(buckets) == self.BUCKETS
        assert sum(b.on_hand for b in buckets) == self.on_hand[key]
        assert sum(b.reserved for b in buckets) == self.reserved[key]
        spare = [b.on_hand - b.reserved for b in buckets]
        assert max(spare) - min(spare) <= 1

    @precondition(lambda self: self.orders)
    @rule(
        order_index=st.integers(0, 100),
        name=st.sampled_from(
            ["confirm", "fail_payment", "retry_payment", "route", "ship", "deliver", "refund"]
        ),
    )
    def take_transition(self, order_index: int, name: str) -> None:
        self.apply_transition(self.pick_order(order_index), name)

    @precondition(lambda self: self.orders)
    @rule(order_index=st.integers(0, 100))
    def advance_along_happy_path(self, order_index: int) -> None:
        order_id = self.pick_order(order_index)
        name = HAPPY_PATH.get(self.status[order_id])
        if name is not None:
            self.apply_transition(order_id, name)

    @precondition(lambda self: self.orders)
    @rule(order_index=st.integers(0, 100))
    def pay_after_failure(self, order_index: int) -> None:
        order_id = self.pick_order(order_index)
        for name in ("fail_payment", "retry_payment", "confirm"):
            self.apply_transition(order_id, name)

    @precondition(lambda self: self.orders)
    @rule(order_index=st.integers(0, 100))
    def cancel(self, order_index: int) -> None:
        order_id = self.pick_order(order_index)
        if self.status[order_id] not in MACHINE["cancel"][0]:
            with pytest.raises(InvalidTransition):
                order_cancel(order_id=order_id, actor=Actor(user=self.customer))
            return
        if any(self.shipped[order_id].values()):
            # A warehouse shipped its whole part (the order is still routed): too late.
            with pytest.raises(OrderAtWarehouse):
                order_cancel(order_id=order_id, actor=Actor(user=self.customer))
            return
        order = order_cancel(order_id=order_id, actor=Actor(user=self.customer))
        assert order.status == S.CANCELLED
        self.status[order_id] = S.CANCELLED
        self.release(order_id, ships=False)

    @precondition(lambda self: self.orders)
    @rule(order_index=st.integers(0, 100))
    def let_reservation_run_out(self, order_index: int) -> None:
        order_id = self.pick_order(order_index)
        Order.objects.filter(pk=order_id).update(
            reservation_expires_at=timezone.now() - timedelta(seconds=1)
        )
        if self.status[order_id] == S.PAYMENT_FAILED:
            # A retry needs a live reservation.
            with pytest.raises(InvalidTransition):
                order_transition_by_name(
                    order_id=order_id, transition="retry_payment", actor=Actor.system()
                )
        expirable = self.status[order_id] in MACHINE["expire"][0]

        expired = orders_expire_overdue()

        assert expired == (1 if expirable else 0)
        if expirable:
            self.status[order_id] = S.EXPIRED
            self.release(order_id, ships=False)
        assert orders_expire_overdue() == 0

    @precondition(lambda self: self.orders)
    @rule(
        order_index=st.integers(0, 100),
        line_index=st.integers(0, 2),
        quantity=st.integers(1, 3),
        warehouse_index=st.integers(0, 2),
        restock=st.booleans(),
        ship_first=st.booleans(),
    )
    def return_units(
        self,
        order_index: int,
        line_index: int,
        quantity: int,
        warehouse_index: int,
        restock: bool,
        ship_first: bool,
    ) -> None:
        order_id = self.pick_order(order_index)
        # Most orders never ship in a short run: take this one there first.
        while ship_first and self.status[order_id] in (S.PENDING_PAYMENT, S.CONFIRMED, S.ROUTED):
            self.apply_transition(order_id, HAPPY_PATH[self.status[order_id]])
        lines = self.lines[order_id]
        product_index = sorted(lines)[line_index % len(lines)]
        call: dict[str, Any] = {
            "order_id": order_id,
            "lines": [ReturnLineRequest(self.products[product_index].sku, quantity)],
            "reason": "state machine",
            "actor": Actor(user=self.customer),
        }
        if self.status[order_id] not in RETURNABLE:
            with pytest.raises(ReturnNotReturnable):
                return_open(**call)
            return
        shipped = lines[product_index] - self.rest_released[order_id][product_index]
        if self.returned[order_id][product_index] + quantity > shipped:
            with pytest.raises(ReturnExceedsShipped):
                return_open(**call)
            return
        opened = return_open(**call)
        warehouse_index %= len(self.warehouses)
        return_authorize(order_id=order_id, return_id=opened.pk, actor=Actor.system())
        return_receive(
            order_id=order_id,
            return_id=opened.pk,
            dispositions={self.products[product_index].sku: "restock" if restock else "dispose"},
            warehouse_code=self.warehouses[warehouse_index].code,
            actor=Actor.system(),
        )
        # Nothing was captured (paid outside oms): refunded with 0.
        refunded = return_refund(order_id=order_id, return_id=opened.pk, actor=Actor.system())
        assert (refunded.status, refunded.refund_amount) == ("refunded", 0)
        if restock:
            self.on_hand[(product_index, warehouse_index)] += quantity
        self.returned[order_id][product_index] += quantity
        if all(
            self.returned[order_id][index] == units - self.rest_released[order_id][index]
            for index, units in lines.items()
        ):
            self.status[order_id] = S.RETURNED
        elif self.status[order_id] != S.PARTIALLY_RETURNED:
            self.status[order_id] = S.PARTIALLY_RETURNED

    def ship_units(self, order_id: uuid.UUID, shipment: Shipment, units: dict[str, int]) -> None:
        """The warehouse reports `units` of its shipment shipped (its signed callback's
        use case, in this process)."""
        shipment_report_apply(
            warehouse=shipment.warehouse,
            event="shipped",
            reference=shipment.reference,
            carrier="DHL",
            tracking_number="SM1",
            event_id=f"sm-{uuid.uuid4().hex}",
            lines=units,
        )
        skus = [p.sku for p in self.products]
        warehouse_index = [w.pk for w in self.warehouses].index(shipment.warehouse_id)
        holds = self.holds[order_id]
        for sku, quantity in units.items():
            key = (skus.index(sku), warehouse_index)
            self.on_hand[key] -= quantity
            self.reserved[key] -= quantity
            holds[key] -= quantity
            self.shipped[order_id][key[0]] += quantity
        # Only a shipment left with units takes the order to partially shipped.
        if self.status[order_id] == S.ROUTED and shipment_unshipped(shipment):
            self.status[order_id] = S.PARTIALLY_SHIPPED

    @precondition(lambda self: self.orders and self.fake_warehouse is not None)
    @rule(
        order_index=st.integers(0, 100),
        line_index=st.integers(0, 2),
        part=st.integers(1, 3),
        finish=st.sampled_from(["rest", "cancel_rest", "later"]),
    )
    def ship_in_parts(self, order_index: int, line_index: int, part: int, finish: str) -> None:
        order_id = self.pick_order(order_index)
        if self.status[order_id] == S.PENDING_PAYMENT:
            self.apply_transition(order_id, "confirm")  # most orders are never paid
        if self.status[order_id] == S.CONFIRMED:
            # Routed to the warehouse service over HTTP: it accepts, shipments follow.
            order_route(order_id=order_id)
            assert Order.objects.get(pk=order_id).status == S.ROUTED
            self.status[order_id] = S.ROUTED
        if self.status[order_id] not in (S.ROUTED, S.PARTIALLY_SHIPPED):
            return
        open_shipments = list(
            Shipment.objects.filter(
                order_id=order_id,
                status__in=[Shipment.Status.ACCEPTED, Shipment.Status.PARTIALLY_SHIPPED],
            )
            .select_related("warehouse", "fulfilment_request")
            .order_by("pk")
        )
        if not open_shipments:
            return  # routed by hand: no warehouse reports
        event(f"ship in parts, then {finish}")
        # When a part of some units of one line leaves
        shipment = open_shipments[line_index % len(open_shipments)]
        rest = shipment_unshipped(shipment)
        sku = sorted(rest)[line_index % len(rest)]
        self.ship_units(order_id, shipment, {sku: min(part, rest[sku])})
        if finish == "rest":
            # Then every warehouse ships what it has left, and the order ships
            for other in open_shipments:
                other.refresh_from_db()
                left = shipment_unshipped(other)
                if left:
                    self.ship_units(order_id, other, left)
            order_ship_when_shipments_left(order_id=order_id, actor=Actor.system())
            assert not any(self.holds[order_id].values())
            self.status[order_id] = S.SHIPPED
            self.release(order_id, ships=True)
        elif finish == "cancel_rest":
            if Shipment.objects.filter(order_id=order_id).count() > 1:
                return  # one warehouse's rest only (several: see the branch's report)
            # Or staff cancel what has not left: only a partially shipped order has a rest
            call = {"order_id": order_id, "actor": Actor.system(), "reason": "backordered"}
            if self.status[order_id] != S.PARTIALLY_SHIPPED:
                with pytest.raises(InvalidTransition):
                    order_cancel_rest(**call)
                return
            order = order_cancel_rest(**call)
            assert order.status == S.SHIPPED
            self.status[order_id] = S.SHIPPED
            for (product_index, _), quantity in self.holds[order_id].items():
                self.rest_released[order_id][product_index] += quantity
            self.release(order_id, ships=False)

    # Invariants

    @invariant()
    def stock_counters_match_ledger_reservations_and_model(self) -> None:
        items = {
            item.pk: item
            for item in StockItem.objects.filter(
                product__in=self.products, warehouse__in=self.warehouses
            )
        }
        ledger = {
            row["stock_item_id"]: (row["on_hand"], row["reserved"])
            for row in StockMovement.objects.filter(stock_item_id__in=items)
            .values("stock_item_id")
            .annotate(on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta"))
        }
        held = dict(
            Reservation.objects.filter(stock_item_id__in=items, status=Reservation.Status.HELD)
            .values("stock_item_id")
            .annotate(total=Sum("quantity"))
            .values_list("stock_item_id", "total")
        )
        totals: dict[Key, tuple[int, int]] = defaultdict(lambda: (0, 0))
        for item in items.values():
            key = self.key_of(item)
            assert 0 <= item.reserved <= item.on_hand, item
            assert ledger.get(item.pk, (0, 0)) == (item.on_hand, item.reserved), item
            assert item.reserved == held.get(item.pk, 0), item
            on_hand, reserved = totals[key]
            totals[key] = (on_hand + item.on_hand, reserved + item.reserved)
        for key, (on_hand, reserved) in totals.items():
            assert (on_hand, reserved) == (self.on_hand[key], self.reserved[key]), key
        if self.BUCKETS > 1:
            counts: dict[Key, int] = defaultdict(int)
            for item in items.values():
                counts[self.key_of(item)] += 1
            assert set(counts.values()) == {self.BUCKETS}
        for key in set(self.on_hand) - set(totals):
            assert (self.on_hand[key], self.reserved[key]) == (0, 0), key

    @invariant()
    def orders_hold_exactly_what_their_status_says(self) -> None:
        statuses = dict(Order.objects.filter(pk__in=self.orders).values_list("pk", "status"))
        assert statuses == self.status
        assert set(statuses.values()) <= set(S.values)
        by_status: dict[tuple[uuid.UUID, int, str], int] = defaultdict(int)
        for order_id, product_id, status, quantity in Reservation.objects.filter(
            order_line__order__in=self.orders
        ).values_list("order_line__order_id", "order_line__product_id", "status", "quantity"):
            by_status[(order_id, product_id, status)] += quantity
        for order_id, status in statuses.items():
            for product_index, quantity in self.lines[order_id].items():
                product_id = self.products[product_index].pk
                held = by_status[(order_id, product_id, Reservation.Status.HELD)]
                committed = by_status[(order_id, product_id, Reservation.Status.COMMITTED)]
                released = by_status[(order_id, product_id, Reservation.Status.RELEASED)]
                released -= self.edit_released[order_id][product_index]
                shipped = self.shipped[order_id][product_index]
                rest = self.rest_released[order_id][product_index]
                if status in HOLDING:
                    assert (held, committed, released) == (quantity - shipped, shipped, 0)
                elif status in SHIPPED:
                    assert (held, committed, released - rest) == (0, quantity - rest, 0)
                else:
                    assert (held, committed, released) == (0, 0, quantity)

    @invariant()
    def history_follows_the_machine(self) -> None:
        last: dict[uuid.UUID, str] = {}
        for order_id, from_status, to_status, name in (
            OrderStatusChange.objects.filter(order__in=self.orders)
            .order_by("created_at", "id")
            .values_list("order_id", "from_status", "to_status", "transition")
        ):
            assert (from_status, to_status, name) in EDGES
            assert last.get(order_id, "") == from_status
            last[order_id] = to_status
        assert last == self.status


@pytest.fixture
def warehouse_service(settings: Any) -> Any:
    """A fake warehouse service the machine routes orders to (it ships only when told)."""
    settings.FULFILMENT_CALLBACK_BASE_URL = "http://oms.test"
    settings.FULFILMENT_READ_TIMEOUT_SECONDS = 2.0
    fake = FakeWarehouse(secret=WAREHOUSE_SECRET, **FAST).start()
    fake.configure(auto_callbacks=False)
    StockAndOrders.fake_warehouse = fake
    try:
        yield fake
    finally:
        StockAndOrders.fake_warehouse = None
        fake.stop()


@pytest.mark.django_db
@pytest.mark.usefixtures("warehouse_service")
def test_stock_and_orders_stay_consistent_under_random_use_case_sequences():
    run_state_machine_as_test(
        StockAndOrders,
        settings=settings(max_examples=40, stateful_step_count=25, deadline=None, database=None),
    )


class StockInBucketsAndOrders(StockAndOrders):
    BUCKETS = 4


@pytest.mark.django_db
@pytest.mark.usefixtures("warehouse_service")
def test_stock_in_four_buckets_and_orders_stay_consistent_under_random_use_case_sequences():
    """The same machine with every stock item split over 4 bucket rows: a checkout is
    refused exactly when the total over buckets (and warehouses) is short."""
    run_state_machine_as_test(
        StockInBucketsAndOrders,
        settings=settings(max_examples=40, stateful_step_count=25, deadline=None, database=None),
    )


def test_machine_edges_match_the_order_model():
    declared = {
        (str(transition.source), str(transition.target), transition.name)
        for transition in Order._meta.get_field("status").get_all_transitions(Order)
    }

    assert (
        declared
        == EDGES - {("", S.PENDING_PAYMENT, "place")} | PARTIAL_SHIPMENT_EDGES | BACKORDER_EDGES
    )
