"""A return refunds its lines' own tax; shipping and its tax come with the last unit."""

import pytest

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
from tests.pricing.conftest import DE_ADDRESS


@pytest.mark.django_db
def test_returns_refund_their_own_lines_tax_and_add_up_to_the_total(
    de_rates, stocked_product, customer
):
    # given a shipped DE order: 3 x 3.33 (tax 1.90) and 1 x 10.00 (tax 1.90), standard
    # shipping 4.95 taxed 0.94
    mug = stocked_product(quantities={"main": 5}, price=333, currency="EUR")
    lamp = stocked_product(quantities={"main": 5}, price=1000, currency="EUR")
    staff = Actor.system()
    order = order_place(
        customer=customer,
        email=customer.email,
        shipping_address=DE_ADDRESS,
        lines=[OrderLineRequest(mug.sku, 3), OrderLineRequest(lamp.sku, 1)],
        actor=Actor(user=customer),
    )
    assert [line.tax_amount for line in order.lines.all()] == [190, 190]
    assert (order.shipping_amount, order.tax_amount, order.total_amount) == (495, 474, 2968)
    for transition in ("confirm", "route", "ship"):
        order_transition_by_name(order_id=order.pk, transition=transition, actor=staff)

    # when the lamp comes back, then the mugs one at a time
    amounts = []
    for sku in (lamp.sku, mug.sku, mug.sku, mug.sku):
        opened = return_open(
            order_id=order.pk, lines=[ReturnLineRequest(sku, 1)], reason="test", actor=staff
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

    # then the lamp refunds exactly its own tax (not a share of the order's), the mugs
    # share theirs 63 / 63 / 64, shipping and its tax come with the last unit, and the
    # refunds add up to the order's total
    assert amounts == [1000 + 190, 333 + 63, 333 + 63, 333 + 64 + 495 + 94]
    assert sum(amounts) == order.total_amount
