"""Query budgets: each hot endpoint sends a fixed number of statements, whatever the
number of lines, orders or events it renders. Through the real API with a real API key.

Counts include SAVEPOINT/RELEASE (a pytest-django `db` test runs inside a transaction,
so the endpoint's own BEGIN/COMMIT show up as savepoints). A budget that grows is a
regression (an N+1 or a new round trip); one that shrinks should be lowered here.
"""

import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from core.actors import Actor
from core.breakers import circuit_breakers_reset
from flows.place import OrderLineRequest, order_place
from inventory.models import Product
from orders.models import Order
from tests.conftest import new_idempotency_key, order_payload, stock_receive, token_client
from tests.factories import ProductFactory, StaffFactory, UserFactory, WarehouseFactory

pytest_plugins = ("tests.support.fake_stripe",)

# Statements per request, including the API-key lookup.
# Checkout (flows.place.order_place_written): the key, the products with their stock rows
# (one read), the shipping and tax rates (pricing.selectors.rates_for), and the one call
# of oms_checkout_write, here inside a savepoint (SAVEPOINT, call, RELEASE).
CHECKOUT_BUDGET = 6
# A checkout the single statement leaves to the general path (a product that allows
# backorders): the read above, then the general path's own 16 statements (its 15, and
# the products' backorder room).
CHECKOUT_GENERAL_PATH_BUDGET = 17
# A paid checkout (flows.place.order_checkout_written): the key, the read, the rates, the
# one call (in a savepoint here: 3) writing the key's claim, the order, the payment and
# its authorize operation; the provider call; then the outcome's transaction (in a
# savepoint: 2 + 2: the order, payment and operation locked by id in one statement, and
# one statement (flows.outcome_sql) with the operation settled, the payment authorized,
# the order confirmed, its audit row, payment.authorized, order.confirmed, their outbox
# messages and the key completed with the response, rendered from what was written).
# Before it: 19 (2026-11-29, the outcome through the ORM and the key completed after
# its commit); the general path 46.
PAID_CHECKOUT_BUDGET = 10
ORDER_DETAIL_BUDGET = 4
# The key, the first page's version (for its ETag), the page, its lines, its payments.
ORDER_LIST_BUDGET = 5
ORDER_HISTORY_BUDGET = 3
EVENT_FEED_BUDGET = 3
ORDER_EVENTS_BUDGET = 3
# A conditional GET whose ETag still matches: the key, then the order's version only.
ORDER_DETAIL_NOT_MODIFIED_BUDGET = 2
# A first page of orders whose ETag still matches: the key, then the page's version only.
ORDER_LIST_NOT_MODIFIED_BUDGET = 2
# The product list from the cache (PRODUCT_LIST_CACHE_SECONDS > 0): the key only.
PRODUCT_LIST_CACHED_BUDGET = 1


@pytest.fixture(autouse=True)
def _key_use_recorded_once(settings: Any) -> None:
    """A key's use is recorded again once API_KEY_LAST_USED_RESOLUTION (60 s) has passed:
    a test slower than that on a busy machine (the event feed's places 30 orders) would
    count one UPDATE more. Within these tests a key's use is recorded once."""
    settings.API_KEY_LAST_USED_RESOLUTION = timedelta(hours=1)


def client_for(user: Any) -> APIClient:
    """A client with a new API key, used once: the key's first use records last_used_at
    (one UPDATE, then none for API_KEY_LAST_USED_RESOLUTION), which is not what a
    steady-state request costs."""
    client = token_client(user)
    assert client.get("/api/v1/products/").status_code == 200
    return client


def products(count: int) -> list[Product]:
    warehouse = WarehouseFactory()
    made = [ProductFactory(price=100 + n) for n in range(count)]
    for product in made:
        stock_receive(product, warehouse, 1000)
    return made


def place(customer: Any, catalogue: list[Product], lines: int = 1) -> Order:
    return order_place(
        customer=customer,
        email="ada@example.com",
        shipping_address=order_payload([])["shipping_address"],
        lines=[OrderLineRequest(product.sku, 1) for product in catalogue[:lines]],
        actor=Actor(user=customer),
    )


def checkout(
    client: APIClient, catalogue: list[Product], lines: int, payment_method: str = ""
) -> Any:
    payload = order_payload([(product.sku, 2) for product in catalogue[:lines]])
    if payment_method:
        payload["payment_method"] = payment_method
    return client.post(
        "/api/v1/orders/",
        payload,
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )


@pytest.mark.django_db
def test_checkout_sends_the_same_statements_for_1_3_and_10_lines(django_assert_num_queries):
    # Given a customer with an API key and ten stocked products
    client = client_for(UserFactory())
    catalogue = products(10)
    checkout(client, catalogue, 1)  # warm: the first request fills per-process caches

    # When checkouts of 1, 3 and 10 lines are placed, Then each sends the same statements
    for lines in (1, 3, 10):
        with django_assert_num_queries(CHECKOUT_BUDGET):
            response = checkout(client, catalogue, lines)
        assert response.status_code == 201, response.json()
        assert len(response.json()["lines"]) == lines


@pytest.mark.django_db
def test_a_checkout_on_the_general_path_sends_the_same_statements_for_1_3_and_10_lines(
    django_assert_num_queries,
):
    # Given ten stocked products that allow backorders (the general path's case)
    client = client_for(UserFactory())
    catalogue = products(10)
    Product.objects.filter(pk__in=[product.pk for product in catalogue]).update(backorder_limit=5)
    checkout(client, catalogue, 1)

    # When checkouts of 1, 3 and 10 lines are placed, Then each sends the same statements
    for lines in (1, 3, 10):
        with django_assert_num_queries(CHECKOUT_GENERAL_PATH_BUDGET):
            response = checkout(client, catalogue, lines)
        assert response.status_code == 201, response.json()
        assert len(response.json()["lines"]) == lines


@pytest.mark.django_db
def test_a_paid_checkout_sends_the_same_statements_for_1_3_and_10_lines(
    django_assert_num_queries, fake_stripe, settings
):
    # Given a customer with an API key, ten stocked products and the fake provider
    circuit_breakers_reset()
    settings.STRIPE_API_BASE = fake_stripe.url
    settings.STRIPE_API_KEY = fake_stripe.api_key
    client = client_for(UserFactory())
    catalogue = products(10)
    checkout(client, catalogue, 1, payment_method="pm_card_visa")

    # When paid checkouts of 1, 3 and 10 lines are placed, Then each sends the same
    # statements, and is authorized
    for lines in (1, 3, 10):
        with django_assert_num_queries(PAID_CHECKOUT_BUDGET):
            response = checkout(client, catalogue, lines, payment_method="pm_card_visa")
        assert response.status_code == 201, response.json()
        assert len(response.json()["lines"]) == lines
        assert response.json()["payment"]["status"] == "authorized"
    circuit_breakers_reset()


@pytest.mark.django_db
def test_order_detail_sends_the_same_statements_for_1_3_and_10_lines(django_assert_num_queries):
    customer = UserFactory()
    client = client_for(customer)
    catalogue = products(10)
    for lines in (1, 3, 10):
        order = place(customer, catalogue, lines)
        with django_assert_num_queries(ORDER_DETAIL_BUDGET):
            response = client.get(f"/api/v1/orders/{order.pk}/")
        assert response.status_code == 200
        assert len(response.json()["lines"]) == lines


@pytest.mark.django_db
def test_an_unchanged_order_costs_one_statement_after_the_key(django_assert_num_queries):
    # Given a customer's order of 10 lines with a payment, read once for its ETag
    customer = UserFactory()
    client = client_for(customer)
    order = place(customer, products(10), lines=10)
    client.post(
        f"/api/v1/orders/{order.pk}/pay/",
        {"payment_method": "pm_card_visa"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )
    etag = client.get(f"/api/v1/orders/{order.pk}/")["ETag"]

    # When it is read again with If-None-Match, Then 304 after the key and the version
    with django_assert_num_queries(ORDER_DETAIL_NOT_MODIFIED_BUDGET):
        response = client.get(f"/api/v1/orders/{order.pk}/", HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304


@pytest.mark.django_db
def test_the_cached_product_list_reads_no_product_or_stock(django_assert_num_queries, settings):
    from inventory.api.product_list import product_list_forget

    # Given the product list cached, and filled by one read
    settings.PRODUCT_LIST_CACHE_SECONDS = 60
    product_list_forget()
    products(10)
    client = client_for(UserFactory())
    try:
        # When it is read again (plainly, then conditionally), Then only the key is read
        with django_assert_num_queries(PRODUCT_LIST_CACHED_BUDGET):
            response = client.get("/api/v1/products/")
        assert response.status_code == 200
        assert len(response.json()) == 10
        with django_assert_num_queries(PRODUCT_LIST_CACHED_BUDGET):
            again = client.get("/api/v1/products/", HTTP_IF_NONE_MATCH=response["ETag"])
        assert again.status_code == 304
    finally:
        product_list_forget()


@pytest.mark.django_db
def test_a_customers_first_page_of_orders_costs_the_same_for_1_and_50_orders(
    django_assert_num_queries,
):
    # Given two customers, one with 1 order and one with 50 (3 lines each)
    catalogue = products(3)
    few, many = UserFactory(), UserFactory()
    place(few, catalogue, 3)
    for _ in range(50):
        place(many, catalogue, 3)

    # When each reads the first page of their orders, Then the statements are the same
    for customer, count in ((few, 1), (many, 50)):
        client = client_for(customer)
        with django_assert_num_queries(ORDER_LIST_BUDGET):
            response = client.get("/api/v1/orders/")
        assert response.status_code == 200
        assert len(response.json()["results"]) == count


@pytest.mark.django_db
def test_an_unchanged_first_page_of_orders_costs_one_statement_after_the_key(
    django_assert_num_queries,
):
    # Given two customers, one with 1 order and one with 60 (3 lines each, one paid)
    catalogue = products(3)
    few, many = UserFactory(), UserFactory()
    place(few, catalogue, 3)
    for _ in range(60):
        place(many, catalogue, 3)
    for customer, count in ((few, 1), (many, 50)):
        client = client_for(customer)
        paid = Order.objects.filter(customer=customer).latest("created_at")
        client.post(
            f"/api/v1/orders/{paid.pk}/pay/",
            {"payment_method": "pm_card_visa"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
        )
        first = client.get("/api/v1/orders/")
        assert len(first.json()["results"]) == count

        # When each reads it again with its ETag, Then 304 after the key and the version
        with django_assert_num_queries(ORDER_LIST_NOT_MODIFIED_BUDGET):
            response = client.get("/api/v1/orders/", HTTP_IF_NONE_MATCH=first["ETag"])
        assert response.status_code == 304


@pytest.mark.django_db
def test_order_history_costs_the_same_for_1_and_many_changes(django_assert_num_queries):
    # Given an order with one status change and an order with several, by different actors
    catalogue = products(1)
    customer = UserFactory()
    quiet = place(customer, catalogue)
    busy = place(customer, catalogue)
    staff = StaffFactory()
    staff_client = client_for(staff)
    for transition in ("cancel",):
        response = staff_client.post(
            f"/api/v1/orders/{busy.pk}/transitions/",
            {"transition": transition, "reason": "budget test"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
        )
        assert response.status_code == 200, response.json()

    client = client_for(customer)
    for order, count in ((quiet, 1), (busy, 2)):
        with django_assert_num_queries(ORDER_HISTORY_BUDGET):
            response = client.get(f"/api/v1/orders/{order.pk}/history/")
        assert response.status_code == 200
        assert len(response.json()) == count


def feed_until(client: APIClient, count: int, assert_num_queries: Any) -> list[Any]:
    """Read the feed (each read within budget) until it returns `count` events: any
    transaction running on the shared server holds the commit horizon back a moment."""
    deadline = time.monotonic() + 60
    while True:
        with assert_num_queries(EVENT_FEED_BUDGET):
            response = client.get("/api/v1/events/", {"limit": "100"})
        assert response.status_code == 200
        events: list[Any] = response.json()["events"]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_event_feed_costs_the_same_for_1_and_30_events(django_assert_num_queries):
    # Given committed orders (so their events are behind the feed's commit horizon)
    catalogue = products(1)
    customer = UserFactory()
    client = client_for(StaffFactory())
    place(customer, catalogue)

    # When the feed returns 1 event, then 30, Then each read sends the same statements
    assert len(feed_until(client, 1, django_assert_num_queries)) == 1
    for _ in range(29):
        place(customer, catalogue)
    assert len(feed_until(client, 30, django_assert_num_queries)) == 30


@pytest.mark.django_db
def test_one_orders_events_cost_the_same_for_1_and_10_events(django_assert_num_queries):
    catalogue = products(1)
    customer = UserFactory()
    client = client_for(customer)
    quiet = place(customer, catalogue)
    busy = place(customer, catalogue)
    staff_client = client_for(StaffFactory())
    staff_client.post(
        f"/api/v1/orders/{busy.pk}/transitions/",
        {"transition": "cancel", "reason": "budget test"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
    )
    for order in (quiet, busy):
        with django_assert_num_queries(ORDER_EVENTS_BUDGET):
            response = client.get(f"/api/v1/orders/{order.pk}/events/")
        assert response.status_code == 200
        assert response.json()["events"]


@pytest.mark.django_db(transaction=True)
def test_a_checkout_commits_once_and_reads_nothing_back():
    # Given a customer with a (used) API key and a stocked product
    client = client_for(UserFactory())
    catalogue = products(3)

    # When they check out 3 lines with a new Idempotency-Key
    with CaptureQueriesContext(connection) as captured:
        response = checkout(client, catalogue, 3)

    # Then the claim, the order and the stored response are written by one statement in
    # autocommit (no BEGIN or COMMIT of their own), and the new order's lines and
    # payments are rendered without a SELECT of them
    assert response.status_code == 201, response.json()
    sql = [query["sql"] for query in captured.captured_queries]
    assert [s for s in sql if s in ("BEGIN", "COMMIT") or s.startswith("SAVEPOINT")] == []
    assert [s for s in sql if s.startswith(("INSERT", "UPDATE", "WITH"))] == []
    assert len([s for s in sql if s.startswith("SELECT oms_checkout_write(")]) == 1
    assert not [s for s in sql if s.startswith(('SELECT "orders_', 'SELECT "payments_'))]
