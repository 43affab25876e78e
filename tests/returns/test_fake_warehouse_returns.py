"""The fake warehouse reports a return received on oms's signed callback, and oms
restocks the units there and refunds the return."""

import json
import time

import pytest
import requests

from core import signing
from core.actors import Actor
from core.models import OutboxMessage
from core.outbox import outbox_handle
from core.signing import SIGNATURE_HEADER
from fakes.warehouse import FakeWarehouse
from flows.place import OrderLineRequest, order_place
from flows.returns import ReturnLineRequest, return_authorize, return_open
from flows.transitions import order_transition_by_name
from inventory.models import StockItem, StockMovement
from orders.models import Order, Return
from tests.conftest import order_payload, stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory
from tests.support.fake_warehouse import WAREHOUSE_SECRET

pytest_plugins = ("tests.support.fake_warehouse",)


@pytest.mark.django_db(transaction=True)
def test_the_fake_warehouse_reports_a_return_received_and_oms_restocks_and_refunds_it(
    fake_warehouse: FakeWarehouse, live_server
) -> None:
    # given an order shipped from warehouse wh-ret (paid outside oms), with an authorized
    # return of 2 of its 3 units
    fake_warehouse.configure(auto_callbacks=False)
    warehouse = WarehouseFactory(code="wh-ret", fulfilment_secret=WAREHOUSE_SECRET)
    product = ProductFactory(price=1500)
    stock_receive(product, warehouse, 5)
    system = Actor.system()
    order = order_place(
        customer=UserFactory(),
        email="ada@example.com",
        shipping_address=order_payload([])["shipping_address"],
        lines=[OrderLineRequest(product.sku, 3)],
        actor=system,
    )
    for transition in ("confirm", "route", "ship"):
        order_transition_by_name(order_id=order.pk, transition=transition, actor=system)
    opened = return_open(
        order_id=order.pk, lines=[ReturnLineRequest(product.sku, 2)], reason="r", actor=system
    )
    return_authorize(order_id=order.pk, return_id=opened.pk, actor=system)
    # and the fake holding a shipment of that order that calls back to oms
    request = {
        "request_id": "fr-ret-1",
        "order_number": order.number,
        "warehouse_code": "wh-ret",
        "lines": [{"sku": product.sku, "name": product.name, "quantity": 3}],
        "shipping_address": {"city": "Leeds"},
        "callback_url": f"{live_server.url}/api/v1/fulfilment/callbacks/",
    }
    body = json.dumps(request).encode()
    accepted = requests.post(
        fake_warehouse.requests_url,
        data=body,
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": "fr-ret-1",
            SIGNATURE_HEADER: signing.sign(body, WAREHOUSE_SECRET, int(time.time())),
        },
        timeout=5,
    )
    assert accepted.status_code == 201, accepted.text
    reference = accepted.json()["shipment_reference"]

    # when the warehouse reports the units received
    answer = fake_warehouse.send_return_received(
        reference, str(opened.pk), [{"sku": product.sku, "disposition": "restock"}]
    )

    # then oms took the signed report and asked for the refund (its outbox message is
    # handled here, unless the eager dispatch at commit did it already)
    assert answer["delivered"] is True, fake_warehouse.callbacks()
    (attempt,) = [c for c in fake_warehouse.callbacks() if c["event"] == "return_received"]
    assert attempt["status"] == 200
    (message,) = OutboxMessage.objects.filter(
        topic="return.received", payload__return_id=str(opened.pk)
    )
    outbox_handle(message.pk)
    # restocked there, refunded (nothing was captured: 0), the order partially returned
    returned = Return.objects.get(pk=opened.pk)
    assert (returned.status, returned.refund_amount, returned.warehouse_id) == (
        "refunded",
        0,
        warehouse.pk,
    )
    assert StockItem.objects.get(product=product, warehouse=warehouse).on_hand == 5 - 3 + 2
    assert StockMovement.objects.filter(kind="return", stock_item__product=product).count() == 1
    assert Order.objects.get(pk=order.pk).status == "partially_returned"
