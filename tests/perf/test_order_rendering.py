"""The order response is built directly (OrderOutputSerializer.to_representation) for
speed; it must stay what DRF's generic rendering of the declared fields gives."""

import json
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder

from core.actors import Actor
from flows.api.serializers import OrderOutputSerializer
from flows.cancel import order_cancel
from flows.place import OrderLineRequest, order_place
from orders import selectors
from orders.models import Order
from payments.models import Payment
from tests.conftest import order_payload, stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory


def assert_renders_as_declared(order: Order) -> None:
    serializer = OrderOutputSerializer()
    fast = OrderOutputSerializer(order).data
    declared = serializer.declared_representation(order)
    assert json.dumps(fast, cls=DjangoJSONEncoder) == json.dumps(declared, cls=DjangoJSONEncoder)


def place(customer: Any, lines: list[tuple[Any, int]], **address: Any) -> Order:
    return order_place(
        customer=customer,
        email="zoë@example.com",
        shipping_address={**order_payload([])["shipping_address"], **address},
        lines=[OrderLineRequest(product.sku, quantity) for product, quantity in lines],
        actor=Actor(user=customer),
    )


@pytest.mark.django_db
def test_new_read_back_cancelled_and_paid_orders_render_as_declared():
    # Given products (one with a non-ASCII name) and a customer
    warehouse = WarehouseFactory()
    pen, ink, pad = (ProductFactory(name=name) for name in ("Pen", "Tinte für Füller", "Pad"))
    for product in (pen, ink, pad):
        stock_receive(product, warehouse, 50)
    customer = UserFactory()
    actor = Actor(user=customer)

    # A new order as checkout renders it (its lines known, nothing read back)
    new = place(customer, [(pen, 1), (ink, 2), (pad, 3)])
    assert_renders_as_declared(new)
    # The same order read back
    assert_renders_as_declared(selectors.order_get_for(actor=actor, order_id=new.pk))
    # An order whose stored address lacks the optional line
    legacy = place(customer, [(pen, 1)])
    Order.objects.filter(pk=legacy.pk).update(
        shipping_address={k: v for k, v in legacy.shipping_address.items() if k != "line2"}
    )
    assert_renders_as_declared(selectors.order_get_for(actor=actor, order_id=legacy.pk))
    # A cancelled order (no reservation deadline)
    cancelled = place(customer, [(ink, 1)])
    order_cancel(order_id=cancelled.pk, actor=actor, reason="test")
    assert_renders_as_declared(selectors.order_get_for(actor=actor, order_id=cancelled.pk))
    # An order with payment attempts (the latest is rendered)
    paid = place(customer, [(pad, 2)])
    for status in (Payment.Status.FAILED, Payment.Status.REQUIRES_ACTION):
        Payment.objects.create(
            order=paid,
            payment_method="pm_card_visa",
            amount=paid.total_amount,
            currency=paid.currency,
            status=status,
            client_secret="secret",
        )
    rendered = selectors.order_get_for(actor=actor, order_id=paid.pk)
    assert_renders_as_declared(rendered)
    assert OrderOutputSerializer(rendered).data["payment"]["client_secret"] == "secret"


@pytest.mark.django_db
def test_a_page_of_orders_read_as_rows_renders_each_order_as_declared():
    # Given a customer's pending, cancelled and paid orders (with payment attempts)
    warehouse = WarehouseFactory()
    pen, ink = ProductFactory(name="Pen"), ProductFactory(name="Tinte für Füller")
    for product in (pen, ink):
        stock_receive(product, warehouse, 50)
    customer = UserFactory()
    actor = Actor(user=customer)
    place(customer, [(pen, 1), (ink, 2)])
    cancelled = place(customer, [(ink, 1)])
    order_cancel(order_id=cancelled.pk, actor=actor, reason="test")
    paid = place(customer, [(pen, 3)])
    for status in (Payment.Status.FAILED, Payment.Status.REQUIRES_ACTION):
        Payment.objects.create(
            order=paid,
            payment_method="pm_card_visa",
            amount=paid.total_amount,
            currency=paid.currency,
            status=status,
            client_secret="secret",
        )

    # When the page is read as rows and rendered
    rows = selectors.order_rows_load(list(selectors.order_list_rows_for(actor=actor)))
    page = [OrderOutputSerializer().to_representation(row) for row in rows]

    # Then each order renders as DRF's generic path renders the model instance
    assert [row.pk for row in rows] == list(
        selectors.order_list_for(actor=actor).values_list("pk", flat=True)
    )
    for rendered in page:
        order = selectors.order_get_for(actor=actor, order_id=rendered["id"])
        declared = OrderOutputSerializer().declared_representation(order)
        assert json.dumps(rendered, cls=DjangoJSONEncoder) == json.dumps(
            declared, cls=DjangoJSONEncoder
        )
    assert page[0]["payment"]["client_secret"] == "secret"
    assert page[0]["payment"]["status"] == Payment.Status.REQUIRES_ACTION
