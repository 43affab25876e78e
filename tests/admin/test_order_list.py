"""The order list and page: search by number, email, SKU and payment intent id; filters
by status, date, warehouse and payment status; the address and history as people read
them; and a query count that does not grow with the rows shown."""

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.actors import Actor
from flows.place import OrderLineRequest, order_place
from flows.transitions import order_transition_by_name
from inventory.models import Warehouse
from orders.models import Order
from payments.models import Payment
from tests.admin.conftest import ADDRESS
from tests.conftest import stock_receive
from tests.factories import ProductFactory, UserFactory, WarehouseFactory

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fake_warehouse")

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:orders_order_changelist")


def listed(client: Client, **params: str) -> list[Order]:
    response = client.get(CHANGELIST, params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.fixture
def unpaid_order(warehouse: Warehouse) -> Callable[[], Order]:
    """An order for a product of its own, placed without paying."""

    def make() -> Order:
        product = ProductFactory(price=500, currency="EUR")
        stock_receive(product, warehouse, 5)
        customer = UserFactory()
        return order_place(
            customer=customer,
            email=customer.email,
            shipping_address=ADDRESS,
            lines=[OrderLineRequest(sku=product.sku, quantity=1)],
            actor=Actor(user=customer),
        )

    return make


def test_search_finds_an_order_by_number_email_sku_and_payment_intent(
    admin_client: Client, paid_order: Callable[..., Order], unpaid_order: Callable[[], Order]
) -> None:
    paid = paid_order()
    unpaid = unpaid_order()
    intent_id = Payment.objects.get(order=paid).provider_payment_id
    sku = unpaid.lines.get().sku

    assert listed(admin_client, q=paid.number) == [paid]
    assert listed(admin_client, q=unpaid.email) == [unpaid]
    assert listed(admin_client, q=sku) == [unpaid]
    assert listed(admin_client, q=intent_id) == [paid]


def test_filters_by_status_warehouse_and_payment_status(
    admin_client: Client, paid_order: Callable[..., Order], unpaid_order: Callable[[], Order]
) -> None:
    # Given an order routed to leeds (authorized), one only confirmed, one unpaid, and a
    # second warehouse that holds nothing
    routed = paid_order(routed=True)
    confirmed = paid_order()
    unpaid = unpaid_order()
    WarehouseFactory(code="york")
    order_transition_by_name(order_id=unpaid.pk, transition="cancel", actor=Actor.system())

    assert listed(admin_client, status__exact="cancelled") == [unpaid]
    assert listed(admin_client, warehouse="leeds") == [routed]
    assert listed(admin_client, warehouse="york") == []
    assert set(listed(admin_client, payment_status="authorized")) == {routed, confirmed}
    assert listed(admin_client, payment_status="none") == [unpaid]
    today = routed.created_at.date()
    by_date = listed(
        admin_client,
        created_at__year=str(today.year),
        created_at__month=str(today.month),
        created_at__day=str(today.day),
    )
    assert set(by_date) == {routed, confirmed, unpaid}


def test_list_shows_email_and_payment_status_in_a_fixed_number_of_queries(
    admin_client: Client, paid_order: Callable[..., Order], unpaid_order: Callable[[], Order]
) -> None:
    paid = paid_order()
    unpaid_order()
    admin_client.get(CHANGELIST)  # warm the caches a first page fills
    with CaptureQueriesContext(connection) as few:
        page = admin_client.get(CHANGELIST)

    for _ in range(4):
        paid_order(quantity=1)
        unpaid_order()
    with CaptureQueriesContext(connection) as more:
        admin_client.get(CHANGELIST)

    html = page.content.decode()
    assert paid.email in html
    assert '<td class="field-payment_status_display">authorized</td>' in html
    assert len(more) == len(few), [query["sql"] for query in more.captured_queries]


def test_order_page_shows_the_address_as_an_address_and_the_history_oldest_first(
    admin_client: Client, paid_order: Callable[..., Order]
) -> None:
    order = paid_order()
    order_transition_by_name(
        order_id=order.pk, transition="cancel", actor=Actor.system(), reason="customer called"
    )

    page = admin_client.get(reverse("admin:orders_order_change", args=[order.pk]))

    html = " ".join(page.content.decode().split())
    assert "Ada Lovelace<br>1 Analytical Way<br>Flat 2<br>N1 9GU London<br>GB" in html
    placed = html.index("<td>— → pending_payment (place)</td>")
    confirmed = html.index("<td>pending_payment → confirmed (confirm)</td>")
    cancelled = html.index(
        "<td>confirmed → cancelled (cancel)</td><td>system</td><td>customer called</td>"
    )
    assert placed < confirmed < cancelled


def test_order_page_queries_do_not_grow_with_its_history(
    admin_client: Client, paid_order: Callable[..., Order]
) -> None:
    short, long = paid_order(), paid_order()
    for transition in ("route", "ship"):
        order_transition_by_name(order_id=long.pk, transition=transition, actor=Actor.system())

    def queries(order: Any) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(reverse("admin:orders_order_change", args=[order.pk]))
        return len(captured)

    queries(short)  # warm the caches (content types) a first page fills
    assert queries(long) == queries(short)
