"""A backordered order with a real worker: paid, it waits for stock and is not routed; a
receipt through the API lets the worker confirm it, route it to the warehouse and tell
the customer that the backordered items are in stock."""

import pytest

from fulfilment.models import FulfilmentRequest
from inventory.models import BackorderClaim
from tests.conftest import new_idempotency_key
from tests.factories import ProductFactory
from tests.payments.conftest import GOOD_CARD
from tests.support.worker import wait_for
from tests.worker.conftest import (
    checkout,
    emails_received,
    history,
    order_status,
    smtp_env,
    wait_outbox_settled,
    warehouse_at,
)

pytest_plugins = (
    "tests.support.redis_server",
    "tests.support.worker",
    "tests.support.smtp",
    "tests.support.fake_stripe",
    "tests.support.fake_warehouse",
)


@pytest.mark.django_db(transaction=True)
def test_a_receipt_lets_the_worker_confirm_route_and_email_a_backordered_order(
    start_worker,
    payments_at_fake_stripe,
    fake_warehouses,
    customer_client,
    staff_client,
    smtp_server,
):
    # given a warehouse with 1 unit of a product that allows 5 on backorder, and a worker
    fake = fake_warehouses(auto_callbacks=False)
    warehouse_at("wh-main", fake)
    product = ProductFactory(price=2500, currency="EUR", backorder_limit=5)
    adjust = {"sku": product.sku, "warehouse": "wh-main", "reason": "delivery note 1"}
    first = staff_client.post(
        "/api/v1/stock/adjustments/",
        {**adjust, "quantity": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )
    assert first.status_code == 201, first.content
    worker = start_worker(env=smtp_env(smtp_server))

    # when a customer buys 3 and pays
    order = checkout(customer_client, [(product.sku, 3)], card=GOOD_CARD)

    # then the payment is authorized and the order waits for stock, unrouted
    assert order["status"] == "awaiting_stock", order
    wait_outbox_settled(worker)
    assert order_status(order["id"]) == "awaiting_stock"
    assert not FulfilmentRequest.objects.filter(order_id=order["id"]).exists()
    assert fake.requests() == []

    # when the 2 missing units arrive through the API
    second = staff_client.post(
        "/api/v1/stock/adjustments/",
        {**adjust, "quantity": 2},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )
    assert second.status_code == 201, second.content

    # then the worker confirms the order and routes all 3 units to the warehouse
    wait_for(
        lambda: order_status(order["id"]) == "routed",
        worker=worker,
        timeout=30,
        what="the backordered order routed",
    )
    wait_outbox_settled(worker)
    assert history(order["id"]) == [
        ("place", "pending_payment"),
        ("await_stock", "awaiting_stock"),
        ("stock_arrive", "confirmed"),
        ("route", "routed"),
    ]
    (request,) = FulfilmentRequest.objects.filter(order_id=order["id"])
    assert [(line["sku"], line["quantity"]) for line in request.lines] == [(product.sku, 3)]
    assert BackorderClaim.objects.get().status == BackorderClaim.Status.ALLOCATED
    # and the customer heard that it waits, then that the items are in stock (and got no
    # second confirmation)
    emails = emails_received(smtp_server)
    assert emails[(order["id"], "order_awaiting_stock")] == 1
    assert emails[(order["id"], "backorder_in_stock")] == 1
    assert emails[(order["id"], "order_confirmed")] == 0
