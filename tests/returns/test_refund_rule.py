"""What a return refunds: its units, their share of tax, shipping with the last unit;
the shares of an order's returns add up to exactly what it charged."""

import pytest
from django.db.models import F

from core.actors import Actor
from flows.place import OrderLineRequest, order_place
from flows.returns import (
    ReturnLineRequest,
    return_authorize,
    return_open,
    return_receive,
    return_refund,
)
from flows.transitions import order_transition_by_name
from orders.models import Order
from orders.returns import return_refund_amount
from tests.conftest import order_payload

TAX = 1000
SHIPPING = 500


@pytest.mark.django_db
def test_return_shares_of_tax_and_shipping_add_up_to_the_order_total(stocked_product, customer):
    # given a shipped order of 3 units at 10.00 with 10.00 tax (not divisible by 3) and
    # 5.00 shipping
    product = stocked_product(quantities={"main": 5}, price=1000, currency="EUR")
    staff = Actor.system()
    order = order_place(
        customer=customer,
        email=customer.email,
        shipping_address=order_payload([])["shipping_address"],
        lines=[OrderLineRequest(product.sku, 3)],
        actor=Actor(user=customer),
    )
    Order.objects.filter(pk=order.pk).update(
        tax_amount=TAX,
        shipping_amount=SHIPPING,
        total_amount=F("subtotal_amount") + TAX + SHIPPING,
    )
    for transition in ("confirm", "route", "ship"):
        order_transition_by_name(order_id=order.pk, transition=transition, actor=staff)

    # when its units come back one return at a time
    amounts = []
    for _ in range(3):
        opened = return_open(
            order_id=order.pk,
            lines=[ReturnLineRequest(product.sku, 1)],
            reason="test",
            actor=staff,
        )
        return_authorize(order_id=order.pk, return_id=opened.pk, actor=staff)
        return_receive(
            order_id=order.pk,
            return_id=opened.pk,
            dispositions={},
            warehouse_code="",
            actor=staff,
        )
        opened.refresh_from_db()
        amounts.append(
            return_refund_amount(order=Order.objects.get(pk=order.pk), return_request=opened)
        )
        # Paid outside oms: nothing captured, so the return is refunded with 0.
        return_refund(order_id=order.pk, return_id=opened.pk, actor=staff)

    # then tax is shared 333 / 333 / 334, shipping comes with the last unit, and the
    # returns add up to the order's total
    assert amounts == [1000 + 333, 1000 + 333, 1000 + 334 + SHIPPING]
    order.refresh_from_db()
    assert sum(amounts) == order.total_amount
    assert order.status == "returned"
