"""The stock rows are locked by a checkout's last statement of its own: from that row
lock to COMMIT is the serial section that concurrent checkouts of one SKU (one bucket)
queue on, so these tests pin what runs in it."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.actors import Actor
from flows.place import OrderLineRequest, order_place
from tests.conftest import new_idempotency_key, order_payload, stock_receive, token_client
from tests.factories import ProductFactory, UserFactory, WarehouseFactory


def statements_after_the_row_lock(sql: list[str]) -> list[str]:
    locking = [i for i, s in enumerate(sql) if "FOR NO KEY UPDATE" in s]
    assert len(locking) == 1, sql
    return [
        s.split(" ")[0] + (" core_idempotencykey" if "idempotencykey" in s else "")
        for s in sql[locking[0] + 1 :]
    ]


@pytest.mark.django_db(transaction=True)
def test_order_place_locks_the_stock_rows_last():
    product = ProductFactory()
    stock_receive(product, WarehouseFactory(), 100)
    customer = UserFactory()

    with CaptureQueriesContext(connection) as captured:
        order_place(
            customer=customer,
            email="buyer@example.com",
            shipping_address=order_payload([])["shipping_address"],
            lines=[OrderLineRequest(product.sku, 1)],
            actor=Actor(user=customer),
        )

    sql = [query["sql"] for query in captured.captured_queries]
    assert statements_after_the_row_lock(sql) == ["COMMIT"]


@pytest.mark.django_db(transaction=True)
def test_a_checkout_request_holds_the_stock_rows_for_the_stored_response_and_commit_only():
    product = ProductFactory()
    stock_receive(product, WarehouseFactory(), 100)
    client = token_client(UserFactory())
    assert client.get("/api/v1/products/").status_code == 200

    with CaptureQueriesContext(connection) as captured:
        response = client.post(
            "/api/v1/orders/",
            order_payload([(product.sku, 1)]),
            format="json",
            HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
        )

    # The Idempotency-Key's stored response commits with the order (its contract): the
    # key, the order and the stock are one statement, the request's last, in autocommit
    # (its COMMIT is the statement's own end).
    assert response.status_code == 201, response.json()
    sql = [query["sql"] for query in captured.captured_queries]
    assert sql[-1].startswith("SELECT oms_checkout_write(")
    assert not [s for s in sql if s in ("BEGIN", "COMMIT")]


@pytest.mark.django_db
def test_the_checkout_statement_locks_the_stock_rows_after_every_other_write():
    # Given the installed checkout function
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef('oms_checkout_write(jsonb)'::regprocedure)")
        definition = cursor.fetchone()[0]

    # Then its row lock on the stock rows comes after the key, order, lines, audit row and
    # event are written, and only the reservations and their ledger rows follow it
    lock = definition.index("FOR NO KEY UPDATE")
    for table in (
        "core_idempotencykey",
        "orders_order",
        "orders_orderline",
        "orders_orderstatuschange",
        "orders_orderevent",
    ):
        written = re.search(rf"INSERT INTO {table}\s", definition)
        assert written is not None, table
        assert written.start() < lock, table
    after = definition[lock:]
    assert [t for t in ("inventory_reservation", "inventory_stockmovement") if t in after] == [
        "inventory_reservation",
        "inventory_stockmovement",
    ]
    assert not re.search(r"(INSERT INTO|UPDATE) (orders|core)_", after)
