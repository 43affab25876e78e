"""Plans of the hot reads on a realistic table: a customer whose orders are all older
than everyone else's still has their first page read from their own index."""

from typing import Any

import pytest
from django.db import connection

from orders.selectors import _page_version_sql
from tests.factories import UserFactory

PAGE_SIZE = 50

_ORDERS_SQL = """
INSERT INTO orders_order (created_at, updated_at, id, number, email, shipping_address,
    currency, subtotal_amount, shipping_amount, tax_amount, total_amount, status,
    reservation_expires_at, customer_id, shipping_method)
SELECT now() - %s::interval + (g || ' seconds')::interval, now(), gen_random_uuid(),
    replace(gen_random_uuid()::text, '-', ''), 'plan@example.com', '{}', 'EUR', 100, 0, 0, 100,
    'pending_payment', now(), (%s::int[])[1 + g %% cardinality(%s::int[])], 'standard'
FROM generate_series(1, %s) g
"""


def orders_for(customers: list[Any], count: int, *, age: str) -> None:
    """`count` orders created one second apart from `age` ago, to the customers in turn."""
    ids = [customer.pk for customer in customers]
    with connection.cursor() as cursor:
        cursor.execute(_ORDERS_SQL, [age, ids, ids, count])


def plan(sql: str, params: list[Any]) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.django_db
def test_the_planner_takes_random_reads_as_cheap_as_on_an_ssd():
    with connection.cursor() as cursor:
        cursor.execute("SHOW random_page_cost")
        assert cursor.fetchone()[0] == "1.1"


@pytest.mark.django_db
def test_a_long_standing_customers_first_page_reads_their_own_index():
    # Given a customer with 1,000 orders, all older than 4,000 orders of
    # 50 others, whose orders interleave
    customer = UserFactory()
    orders_for([customer], 1000, age="30 days")
    orders_for([UserFactory() for _ in range(50)], 4000, age="2 hours")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_order")

    # When the planner plans the first page's version statement
    planned = plan(_page_version_sql(for_customer=True), [customer.pk, PAGE_SIZE + 1])

    # Then it reads the customer's newest orders from their index, not every newer order
    assert "order_customer_recent" in planned, planned
    assert "orders_order_created_at" not in planned, planned
