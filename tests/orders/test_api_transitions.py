"""The order state machine through the HTTP API: every (state, transition) pair."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from flows.warehouse_reports import shipment_report_apply
from fulfilment.models import FulfilmentRequest, Shipment
from inventory.models import Product, StockItem
from orders.models import Order, OrderStatusChange
from orders.states import TRANSITIONS, OrderStatus

ORDER_QUANTITY = 3
ON_HAND = 10

# Staff transitions that take a fresh order (pending_payment) to each state.
PATH_TO_STATE: dict[str, list[str]] = {
    OrderStatus.PENDING_PAYMENT: [],
    OrderStatus.PAYMENT_FAILED: ["fail_payment"],
    # A checkout with one unit backordered (see BACKORDERED_UNITS), then authorized.
    OrderStatus.AWAITING_STOCK: ["confirm"],
    OrderStatus.CONFIRMED: ["confirm"],
    OrderStatus.ROUTED: ["confirm", "route"],
    # Then a warehouse reports one unit shipped: see PARTIALLY_SHIPPED_UNITS.
    OrderStatus.PARTIALLY_SHIPPED: ["confirm", "route"],
    OrderStatus.SHIPPED: ["confirm", "route", "ship"],
    OrderStatus.DELIVERED: ["confirm", "route", "ship", "deliver"],
    OrderStatus.REFUNDED: ["confirm", "route", "ship", "refund"],
    # Then a return of some (partially_returned) or all (returned) units, through the
    # returns API: see RETURNED_UNITS.
    OrderStatus.PARTIALLY_RETURNED: ["confirm", "route", "ship"],
    OrderStatus.RETURNED: ["confirm", "route", "ship"],
    OrderStatus.CANCELLED: ["cancel"],
    OrderStatus.EXPIRED: ["expire"],
}

# (from state, transition) -> to state. Every other pair is illegal.
LEGAL: dict[tuple[str, str], str] = {
    (OrderStatus.PENDING_PAYMENT, "confirm"): OrderStatus.CONFIRMED,
    (OrderStatus.PENDING_PAYMENT, "fail_payment"): OrderStatus.PAYMENT_FAILED,
    (OrderStatus.PENDING_PAYMENT, "expire"): OrderStatus.EXPIRED,
    (OrderStatus.PENDING_PAYMENT, "cancel"): OrderStatus.CANCELLED,
    (OrderStatus.PAYMENT_FAILED, "retry_payment"): OrderStatus.PENDING_PAYMENT,
    (OrderStatus.PAYMENT_FAILED, "cancel"): OrderStatus.CANCELLED,
    (OrderStatus.PAYMENT_FAILED, "expire"): OrderStatus.EXPIRED,
    (OrderStatus.AWAITING_STOCK, "cancel"): OrderStatus.CANCELLED,
    (OrderStatus.CONFIRMED, "route"): OrderStatus.ROUTED,
    (OrderStatus.CONFIRMED, "cancel"): OrderStatus.CANCELLED,
    (OrderStatus.ROUTED, "ship"): OrderStatus.SHIPPED,
    (OrderStatus.ROUTED, "cancel"): OrderStatus.CANCELLED,
    (OrderStatus.SHIPPED, "deliver"): OrderStatus.DELIVERED,
    (OrderStatus.SHIPPED, "refund"): OrderStatus.REFUNDED,
    (OrderStatus.DELIVERED, "refund"): OrderStatus.REFUNDED,
    (OrderStatus.PARTIALLY_RETURNED, "refund"): OrderStatus.REFUNDED,
}
# return_partially and return_fully are taken only when a return is refunded
# (flows.returns, tests/returns); by name they are refused from every state, so they are
# among the ILLEGAL pairs here.
RETURNED_UNITS: dict[str, int] = {
    OrderStatus.PARTIALLY_RETURNED: 1,
    OrderStatus.RETURNED: ORDER_QUANTITY,
}
# Units a warehouse reports shipped (flows.warehouse_reports) to reach the state; staff
# cannot ship the rest by name while it is at the warehouse, nor cancel the order.
PARTIALLY_SHIPPED_UNITS: dict[str, int] = {OrderStatus.PARTIALLY_SHIPPED: 1}
# Units of the order no stock covers at checkout (another order takes the rest of the
# stock first): they wait as a backorder claim, so the authorized order awaits stock.
# await_stock and stock_arrive are taken only by the payment outcome and by a receipt
# (tests/inventory/test_backorders.py); by name they are refused from every state.
BACKORDERED_UNITS: dict[str, int] = {OrderStatus.AWAITING_STOCK: 1}
ILLEGAL = [
    (state, name) for state in PATH_TO_STATE for name in TRANSITIONS if (state, name) not in LEGAL
]

# What a legal transition does to (on_hand, reserved) of the order's stock.
STOCK_DELTA: dict[str, tuple[int, int]] = {
    "cancel": (0, -ORDER_QUANTITY),
    "expire": (0, -ORDER_QUANTITY),
    "ship": (-ORDER_QUANTITY, -ORDER_QUANTITY),
}
# An order awaiting stock holds only the units stock covered.
STOCK_DELTA_FROM: dict[tuple[str, str], tuple[int, int]] = {
    (OrderStatus.AWAITING_STOCK, "cancel"): (
        0,
        -(ORDER_QUANTITY - BACKORDERED_UNITS[OrderStatus.AWAITING_STOCK]),
    ),
}


def new_key() -> str:
    return f"transition-{uuid.uuid4().hex}"


def post_transition(client: APIClient, order_id: str, name: str, **extra: Any) -> Any:
    return client.post(
        f"/api/v1/orders/{order_id}/transitions/",
        {"transition": name, "reason": f"test {name}"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_key(),
        **extra,
    )


def post_cancel(client: APIClient, order_id: str, **extra: Any) -> Any:
    return client.post(
        f"/api/v1/orders/{order_id}/cancel/",
        {"reason": "changed my mind"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_key(),
        **extra,
    )


def return_through_api(client: APIClient, order_id: str, sku: str, quantity: int) -> None:
    """Open, authorize, receive (restock) and refund a return (nothing was captured)."""
    opened = client.post(
        f"/api/v1/orders/{order_id}/returns/",
        {"lines": [{"sku": sku, "quantity": quantity}], "reason": "test"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_key(),
    )
    assert opened.status_code == 201, opened.content
    return_id = opened.json()["id"]
    for action in ("authorize", "receive", "refund"):
        step = client.post(
            f"/api/v1/orders/{order_id}/returns/{return_id}/{action}/",
            {},
            format="json",
            HTTP_IDEMPOTENCY_KEY=new_key(),
        )
        assert step.status_code == 200, step.content
    assert step.json()["status"] == "refunded"


def ship_part(order_id: str, sku: str, quantity: int) -> None:
    """A warehouse accepted the order and reports `quantity` units of it shipped."""
    order = Order.objects.get(pk=order_id)
    line = order.lines.get()
    warehouse = line.reservations.get().stock_item.warehouse
    request = FulfilmentRequest.objects.create(
        order=order,
        warehouse=warehouse,
        lines=[{"sku": sku, "name": line.name, "quantity": line.quantity}],
        status=FulfilmentRequest.Status.ACCEPTED,
    )
    Shipment.objects.create(
        order=order, warehouse=warehouse, fulfilment_request=request, reference=f"shp-{order_id}"
    )
    shipment_report_apply(
        warehouse=warehouse,
        event="shipped",
        reference=f"shp-{order_id}",
        carrier="DHL",
        tracking_number="T1",
        event_id="evt-part",
        lines={sku: quantity},
    )


def stock_of(product: Product) -> tuple[int, int]:
    item = StockItem.objects.get(product=product)
    return item.on_hand, item.reserved


def history_of(order_id: str) -> list[tuple[str, str, str]]:
    return list(
        OrderStatusChange.objects.filter(order_id=order_id)
        .order_by("created_at", "id")
        .values_list("from_status", "to_status", "transition")
    )


@pytest.fixture
def product(stocked_product) -> Product:
    return stocked_product(quantities={"main": ON_HAND})


@pytest.fixture
def order_in(customer_client, staff_client, product, place_order):
    """order_in(state): an order of the customer's, walked there by staff through the API."""

    def make(state: str) -> str:
        if state in BACKORDERED_UNITS:
            Product.objects.filter(pk=product.pk).update(backorder_limit=BACKORDERED_UNITS[state])
            taken = ON_HAND - ORDER_QUANTITY + BACKORDERED_UNITS[state]
            assert place_order(customer_client, [(product.sku, taken)]).status_code == 201
        response = place_order(customer_client, [(product.sku, ORDER_QUANTITY)])
        assert response.status_code == 201, response.content
        order_id = response.json()["id"]
        for name in PATH_TO_STATE[state]:
            step = post_transition(staff_client, order_id, name)
            assert step.status_code == 200, step.content
        if state in RETURNED_UNITS:
            return_through_api(staff_client, order_id, product.sku, RETURNED_UNITS[state])
        if state in PARTIALLY_SHIPPED_UNITS:
            ship_part(order_id, product.sku, PARTIALLY_SHIPPED_UNITS[state])
        assert Order.objects.get(pk=order_id).status == state
        return order_id

    return make


def test_every_state_and_transition_pair_is_classified():
    assert len(LEGAL) + len(ILLEGAL) == len(OrderStatus.values) * len(TRANSITIONS)
    assert set(PATH_TO_STATE) == set(OrderStatus.values)


@pytest.mark.django_db
@pytest.mark.parametrize(("from_state", "transition"), sorted(LEGAL))
def test_staff_legal_transition_moves_order_and_records_history(
    staff_client, staff, order_in, product, from_state, transition
):
    # given
    order_id = order_in(from_state)
    history_before = history_of(order_id)
    on_hand_before, reserved_before = stock_of(product)

    # when
    response = post_transition(staff_client, order_id, transition, HTTP_X_REQUEST_ID="req-42")

    # then
    to_state = LEGAL[(from_state, transition)]
    assert response.status_code == 200, response.content
    assert response.json()["status"] == to_state
    assert Order.objects.get(pk=order_id).status == to_state
    new_rows = OrderStatusChange.objects.filter(order_id=order_id).order_by("created_at", "id")[
        len(history_before) :
    ]
    assert len(new_rows) == 1
    row = new_rows[0]
    assert (row.from_status, row.to_status, row.transition) == (from_state, to_state, transition)
    assert row.actor == staff
    assert row.actor_label == staff.username
    assert row.reason == f"test {transition}"
    assert row.request_id == "req-42"
    on_hand_delta, reserved_delta = STOCK_DELTA_FROM.get(
        (from_state, transition), STOCK_DELTA.get(transition, (0, 0))
    )
    assert stock_of(product) == (on_hand_before + on_hand_delta, reserved_before + reserved_delta)


@pytest.mark.django_db
@pytest.mark.parametrize(("from_state", "transition"), ILLEGAL)
def test_staff_illegal_transition_is_rejected_and_changes_nothing(
    staff_client, order_in, product, from_state, transition
):
    # given
    order_id = order_in(from_state)
    history_before = history_of(order_id)
    stock_before = stock_of(product)

    # when
    response = post_transition(staff_client, order_id, transition)

    # then
    assert response.status_code == 409, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "invalid_transition"
    assert body["current_status"] == from_state
    assert body["transition"] == transition
    assert from_state in body["detail"]
    assert Order.objects.get(pk=order_id).status == from_state
    assert history_of(order_id) == history_before
    assert stock_of(product) == stock_before


@pytest.mark.django_db
def test_retry_payment_is_rejected_once_the_reservation_has_expired(
    staff_client, order_in, product
):
    # given
    order_id = order_in(OrderStatus.PAYMENT_FAILED)
    Order.objects.filter(pk=order_id).update(
        reservation_expires_at=timezone.now() - timedelta(seconds=1)
    )
    history_before = history_of(order_id)
    stock_before = stock_of(product)

    # when
    response = post_transition(staff_client, order_id, "retry_payment")

    # then
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "invalid_transition"
    assert response.json()["current_status"] == OrderStatus.PAYMENT_FAILED
    assert Order.objects.get(pk=order_id).status == OrderStatus.PAYMENT_FAILED
    assert history_of(order_id) == history_before
    assert stock_of(product) == stock_before


@pytest.mark.django_db
def test_payment_failure_keeps_the_reservation(staff_client, order_in, product):
    # given
    order_id = order_in(OrderStatus.PENDING_PAYMENT)

    # when
    response = post_transition(staff_client, order_id, "fail_payment")

    # then
    assert response.status_code == 200
    assert stock_of(product) == (ON_HAND, ORDER_QUANTITY)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "from_state",
    [
        OrderStatus.PENDING_PAYMENT,
        OrderStatus.PAYMENT_FAILED,
        OrderStatus.CONFIRMED,
        OrderStatus.ROUTED,
    ],
)
def test_customer_cancels_own_order_and_stock_is_released(
    customer_client, customer, order_in, product, from_state
):
    # given
    order_id = order_in(from_state)
    history_before = history_of(order_id)

    # when
    response = post_cancel(customer_client, order_id, HTTP_X_REQUEST_ID="cancel-1")

    # then
    assert response.status_code == 200, response.content
    assert response.json()["status"] == OrderStatus.CANCELLED
    assert stock_of(product) == (ON_HAND, 0)
    rows = list(OrderStatusChange.objects.filter(order_id=order_id).order_by("created_at", "id"))
    assert len(rows) == len(history_before) + 1
    last = rows[-1]
    assert (last.from_status, last.to_status, last.transition) == (
        from_state,
        OrderStatus.CANCELLED,
        "cancel",
    )
    assert last.actor == customer
    assert last.reason == "changed my mind"
    assert last.request_id == "cancel-1"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "from_state",
    [
        OrderStatus.SHIPPED,
        OrderStatus.DELIVERED,
        OrderStatus.REFUNDED,
        OrderStatus.CANCELLED,
        OrderStatus.EXPIRED,
    ],
)
def test_customer_cannot_cancel_order_past_cancellation(
    customer_client, order_in, product, from_state
):
    # given
    order_id = order_in(from_state)
    history_before = history_of(order_id)
    stock_before = stock_of(product)

    # when
    response = post_cancel(customer_client, order_id)

    # then
    assert response.status_code == 409, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_transition"
    assert response.json()["current_status"] == from_state
    assert Order.objects.get(pk=order_id).status == from_state
    assert history_of(order_id) == history_before
    assert stock_of(product) == stock_before


@pytest.mark.django_db
def test_cancel_replays_with_the_same_idempotency_key(customer_client, order_in, product):
    # given
    order_id = order_in(OrderStatus.PENDING_PAYMENT)
    url = f"/api/v1/orders/{order_id}/cancel/"
    first = customer_client.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="cancel-once")

    # when
    second = customer_client.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="cancel-once")

    # then
    assert first.status_code == second.status_code == 200
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert [row[2] for row in history_of(order_id)] == ["place", "cancel"]
    assert stock_of(product) == (ON_HAND, 0)


@pytest.mark.django_db
def test_cancel_without_idempotency_key_is_rejected(customer_client, order_in):
    # given
    order_id = order_in(OrderStatus.PENDING_PAYMENT)

    # when
    response = customer_client.post(f"/api/v1/orders/{order_id}/cancel/", {}, format="json")

    # then
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_missing"
    assert Order.objects.get(pk=order_id).status == OrderStatus.PENDING_PAYMENT


@pytest.mark.django_db
def test_unknown_transition_name_is_a_validation_error(staff_client, order_in):
    # given
    order_id = order_in(OrderStatus.PENDING_PAYMENT)

    # when
    response = post_transition(staff_client, order_id, "teleport")

    # then
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert [error["field"] for error in body["errors"]] == ["transition"]
    assert Order.objects.get(pk=order_id).status == OrderStatus.PENDING_PAYMENT


@pytest.mark.django_db
def test_transition_on_unknown_order_is_not_found(staff_client):
    # when
    response = post_transition(staff_client, str(uuid.uuid4()), "confirm")

    # then
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_history_lists_the_audit_trail_oldest_first_from_place(
    customer_client, customer, staff, order_in
):
    # given
    order_id = order_in(OrderStatus.DELIVERED)

    # when
    response = customer_client.get(f"/api/v1/orders/{order_id}/history/")

    # then
    assert response.status_code == 200
    rows = response.json()
    assert [row["transition"] for row in rows] == ["place", "confirm", "route", "ship", "deliver"]
    assert [(row["from_status"], row["to_status"]) for row in rows] == [
        ("", OrderStatus.PENDING_PAYMENT),
        (OrderStatus.PENDING_PAYMENT, OrderStatus.CONFIRMED),
        (OrderStatus.CONFIRMED, OrderStatus.ROUTED),
        (OrderStatus.ROUTED, OrderStatus.SHIPPED),
        (OrderStatus.SHIPPED, OrderStatus.DELIVERED),
    ]
    assert rows[0]["actor"] == customer.username
    assert {row["actor"] for row in rows[1:]} == {staff.username}
    assert set(rows[0]) == {
        "from_status",
        "to_status",
        "transition",
        "actor",
        "reason",
        "request_id",
        "created_at",
    }
    created = [row["created_at"] for row in rows]
    assert created == sorted(created)


@pytest.mark.django_db
def test_full_lifecycle_ships_committed_stock_and_refund_leaves_it(staff_client, order_in, product):
    # given
    order_id = order_in(OrderStatus.ROUTED)
    assert stock_of(product) == (ON_HAND, ORDER_QUANTITY)

    # when
    shipped = post_transition(staff_client, order_id, "ship")
    delivered = post_transition(staff_client, order_id, "deliver")
    refunded = post_transition(staff_client, order_id, "refund")

    # then
    assert [r.json()["status"] for r in (shipped, delivered, refunded)] == [
        OrderStatus.SHIPPED,
        OrderStatus.DELIVERED,
        OrderStatus.REFUNDED,
    ]
    assert stock_of(product) == (ON_HAND - ORDER_QUANTITY, 0)


@pytest.mark.django_db
def test_a_transition_with_its_own_endpoint_is_taken_by_name_only_by_that_endpoints_roles(
    order_in,
):
    # given: a routed order, a support agent and a warehouse worker
    from tests.factories import StaffFactory

    order_id = order_in(OrderStatus.ROUTED)
    support, warehouse = APIClient(), APIClient()
    support.force_authenticate(StaffFactory(groups=["support"]))
    warehouse.force_authenticate(StaffFactory(groups=["warehouse"]))

    # when support asks to ship it by name
    refused = post_transition(support, order_id, "ship")

    # then: refused with a stable code before anything happens; the warehouse may ship
    assert refused.status_code == 403, refused.content
    assert refused.json()["code"] == "transition_not_allowed"
    assert Order.objects.get(pk=order_id).status == OrderStatus.ROUTED
    assert post_transition(warehouse, order_id, "deliver").json()["code"] == (
        "transition_not_allowed"
    )
    shipped = post_transition(warehouse, order_id, "ship")
    assert shipped.status_code == 200, shipped.content
    assert Order.objects.get(pk=order_id).status == OrderStatus.SHIPPED
