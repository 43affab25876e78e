"""The Django admin: read-only records, confirmed transitions and stock adjustments via
services. Searching, filters, refunds, groups and the browser test: tests/admin/."""

from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from access.services import api_key_create
from core.actors import Actor
from core.models import IdempotencyKey
from core.money import money_format
from flows.place import OrderLineRequest, order_place
from flows.transitions import order_transition_by_name
from inventory.models import Product, Reservation, StockItem, StockMovement, Warehouse
from orders.models import Order, OrderStatusChange
from orders.states import OrderStatus
from tests.admin.conftest import staff_group_permissions_grant
from tests.conftest import stock_receive
from tests.factories import ProductFactory, StaffFactory, UserFactory, WarehouseFactory

SHIPPING_ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Analytical Way",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}
REGISTERED_MODELS = sorted(
    model._meta.label_lower for model in apps.get_models() if admin.site.is_registered(model)
)
OUR_MODELS = {
    "access.apikey",
    "core.idempotencykey",
    "inventory.product",
    "inventory.reservation",
    "inventory.stockitem",
    "inventory.stockmovement",
    "inventory.warehouse",
    "orders.order",
}


def admin_url(model: type[Any], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def warehouse(db: None) -> Warehouse:
    return WarehouseFactory(code="berlin")


@pytest.fixture
def product(warehouse: Warehouse) -> Product:
    product = ProductFactory(price=1999, currency="EUR")
    stock_receive(product, warehouse, 3)
    return product


@pytest.fixture
def place(product: Product) -> Any:
    """Place an order for `quantity` units of the stocked product."""

    def place_order(quantity: int = 1) -> Order:
        customer = UserFactory()
        return order_place(
            customer=customer,
            email=customer.email,
            shipping_address=SHIPPING_ADDRESS,
            lines=[OrderLineRequest(sku=product.sku, quantity=quantity)],
            actor=Actor(user=customer),
        )

    return place_order


def test_every_model_of_ours_is_registered():
    assert set(REGISTERED_MODELS) >= OUR_MODELS


@pytest.mark.django_db
@pytest.mark.parametrize("label", REGISTERED_MODELS)
def test_changelist_and_change_page_render(admin_client, admin_user, place, label):
    # Given one row of every model
    place(quantity=2)
    IdempotencyKey.objects.create(
        user=admin_user,
        key="key-1",
        request_method="POST",
        request_path="/api/v1/orders/",
        request_fingerprint="0" * 64,
        status=IdempotencyKey.Status.COMPLETED,
        response_status=201,
        response_body={"ok": True},
    )
    Group.objects.get_or_create(name="support")
    api_key_create(user=admin_user, name="ci", scopes=["orders:read"], actor=Actor.system())
    model = apps.get_model(label)
    obj = model._default_manager.first()
    if label in OUR_MODELS:
        assert obj is not None

    # When staff open its list and the page of one row
    changelist = admin_client.get(admin_url(model, "changelist"))
    change = admin_client.get(admin_url(model, "change", obj.pk)) if obj else None

    # Then both render
    assert changelist.status_code == 200
    if change is not None:
        assert change.status_code == 200


@pytest.mark.django_db
def test_order_pages_show_money_lines_and_history(admin_client, place):
    order = place(quantity=2)

    listing = admin_client.get(admin_url(Order, "changelist"))
    detail = admin_client.get(admin_url(Order, "change", order.pk))

    assert listing.status_code == 200
    assert order.number in listing.content.decode()
    assert "39.98 EUR" in listing.content.decode()
    body = " ".join(detail.content.decode().split())
    assert detail.status_code == 200
    assert "19.99 EUR" in body  # unit price on the line inline
    assert "— → pending_payment (place)" in body  # history
    assert "confirm, fail_payment, expire, cancel" in body  # available transitions


@pytest.mark.django_db
def test_order_changelist_filters_by_status_and_searches_by_number_and_email(admin_client, place):
    order = place()
    other = place()
    order_transition_by_name(order_id=other.pk, transition="cancel", actor=Actor.system())

    by_status = admin_client.get(admin_url(Order, "changelist"), {"status__exact": "cancelled"})
    by_number = admin_client.get(admin_url(Order, "changelist"), {"q": order.number})
    by_email = admin_client.get(admin_url(Order, "changelist"), {"q": other.email})

    assert list(by_status.context["cl"].result_list) == [other]
    assert list(by_number.context["cl"].result_list) == [order]
    assert list(by_email.context["cl"].result_list) == [other]


def act(client: Client, order: Order, transition: str, **data: str) -> Any:
    """Open the confirmation page of a transition and submit it with a reason."""
    url = reverse("admin:orders_order_act", args=[order.pk, transition])
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    key = page.context["form"]["idempotency_key"].value()
    return client.post(url, {"reason": "by the book", "idempotency_key": key, **data}, follow=True)


@pytest.mark.django_db
def test_confirmed_transition_moves_order_and_writes_history(admin_client, admin_user, place):
    # Given a pending order
    order = place()

    # When staff confirm it on its confirmation page, with a reason
    response = act(admin_client, order, "confirm", reason="paid by bank transfer")

    # Then it is confirmed, with an audit row naming the staff user, the reason and request
    order.refresh_from_db()
    assert response.redirect_chain == [(admin_url(Order, "change", order.pk), 302)]
    assert order.status == OrderStatus.CONFIRMED
    change = OrderStatusChange.objects.filter(order=order).last()
    assert change is not None
    assert (change.transition, change.from_status, change.to_status, change.reason) == (
        "confirm",
        "pending_payment",
        "confirmed",
        "paid by bank transfer",
    )
    assert change.actor == admin_user
    assert change.request_id
    assert messages_of(response) == [f"{order.number}: confirm, now confirmed."]


@pytest.mark.django_db
def test_cancel_releases_the_stock(admin_client, place, product):
    order = place(quantity=2)

    act(admin_client, order, "cancel")

    order.refresh_from_db()
    item = StockItem.objects.get(product=product)
    assert order.status == OrderStatus.CANCELLED
    assert (item.on_hand, item.reserved) == (3, 0)
    assert Reservation.objects.get().status == Reservation.Status.RELEASED


@pytest.mark.django_db
def test_illegal_transition_is_neither_offered_nor_taken(admin_client, place):
    order = place()
    history_before = OrderStatusChange.objects.filter(order=order).count()
    url = reverse("admin:orders_order_act", args=[order.pk, "ship"])

    page = admin_client.get(admin_url(Order, "change", order.pk))
    opened = admin_client.get(url, follow=True)
    posted = admin_client.post(
        url, {"reason": "try anyway", "idempotency_key": "k-illegal"}, follow=True
    )

    order.refresh_from_db()
    assert url not in page.content.decode()
    assert messages_of(opened) == [f"{order.number} cannot ship now (pending_payment)."]
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert OrderStatusChange.objects.filter(order=order).count() == history_before
    assert messages_of(posted) == [
        f"{order.number}: Cannot ship an order in status 'pending_payment'."
    ]
    error = next(iter(posted.context["messages"]))
    assert error.level_tag == "error"


@pytest.mark.django_db
def test_the_order_list_offers_no_bulk_transitions(admin_client, place):
    place()

    response = admin_client.get(admin_url(Order, "changelist"))

    assert response.context["action_form"] is None


@pytest.mark.django_db
def test_staff_who_may_only_view_orders_cannot_run_transitions(client, place):
    viewer = StaffFactory(groups=[])
    viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(viewer)
    order = place()
    url = reverse("admin:orders_order_act", args=[order.pk, "confirm"])

    page = client.get(admin_url(Order, "change", order.pk))
    response = client.post(url, {"reason": "sneaky", "idempotency_key": "k-1"})

    order.refresh_from_db()
    assert page.status_code == 200
    assert page.context["order_actions"] == []
    assert response.status_code == 403
    assert order.status == OrderStatus.PENDING_PAYMENT


@pytest.mark.django_db
def test_orders_cannot_be_added_edited_or_deleted(admin_client, place):
    order = place()

    add = admin_client.get(admin_url(Order, "add"))
    edit = admin_client.post(
        admin_url(Order, "change", order.pk),
        {"status": "shipped", "email": "x@example.com", "total_amount": 1},
    )
    delete = admin_client.post(admin_url(Order, "delete", order.pk), {"post": "yes"})

    assert (add.status_code, edit.status_code, delete.status_code) == (403, 403, 403)
    order.refresh_from_db()
    assert (order.status, order.total_amount) == (OrderStatus.PENDING_PAYMENT, 1999)
    assert order.email != "x@example.com"


@pytest.mark.django_db
def test_stock_adjustment_view_adjusts_with_a_reason(admin_client, admin_user, product):
    item = StockItem.objects.get(product=product)
    url = admin_url(StockItem, "adjust", item.pk)

    page = admin_client.get(url)
    response = admin_client.post(url, {"quantity": "-2", "reason": "cycle count"}, follow=True)

    assert page.status_code == 200
    assert response.redirect_chain == [(admin_url(StockItem, "change", item.pk), 302)]
    item.refresh_from_db()
    assert (item.on_hand, item.reserved) == (1, 0)
    movement = StockMovement.objects.filter(stock_item=item).last()
    assert movement is not None
    assert (movement.kind, movement.on_hand_delta, movement.reason, movement.actor) == (
        StockMovement.Kind.ADJUSTMENT,
        -2,
        "cycle count",
        admin_user,
    )
    assert messages_of(response) == [
        f"Adjusted {product.sku} at berlin by -2: on hand 1, reserved 0."
    ]


@pytest.mark.django_db
def test_stock_adjustment_view_rejects_a_conflicting_adjustment(admin_client, place, product):
    # Given 3 on hand of which 2 are reserved
    place(quantity=2)
    item = StockItem.objects.get(product=product)
    movements_before = StockMovement.objects.count()

    # When staff try to remove 2 units
    response = admin_client.post(
        admin_url(StockItem, "adjust", item.pk), {"quantity": "-2", "reason": "damaged"}
    )

    # Then nothing changes and the stock_conflict error is shown
    assert response.status_code == 200
    item.refresh_from_db()
    assert (item.on_hand, item.reserved) == (3, 2)
    assert StockMovement.objects.count() == movements_before
    [message] = messages_of(response)
    assert "stock_conflict" in message
    assert "below reserved 2" in message


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"quantity": "5", "reason": ""}, "reason"),
        ({"quantity": "0", "reason": "nothing"}, "quantity"),
        ({"quantity": "abc", "reason": "typo"}, "quantity"),
    ],
)
def test_stock_adjustment_view_requires_a_nonzero_quantity_and_a_reason(
    admin_client, product, data, field
):
    item = StockItem.objects.get(product=product)

    response = admin_client.post(admin_url(StockItem, "adjust", item.pk), data)

    assert response.status_code == 200
    assert field in response.context["form"].errors
    item.refresh_from_db()
    assert item.on_hand == 3


@pytest.mark.django_db
def test_support_may_look_at_stock_but_not_receive_or_adjust_it(client, product):
    staff_group_permissions_grant()
    client.force_login(StaffFactory(groups=["support"]))
    item = StockItem.objects.get(product=product)

    listing = client.get(admin_url(StockItem, "changelist"))
    page = client.get(admin_url(StockItem, "change", item.pk))
    adjusted = client.post(
        admin_url(StockItem, "adjust", item.pk), {"quantity": "5", "reason": "sneaky"}
    )
    received = client.post(
        admin_url(StockItem, "receive"),
        {"product": product.sku, "warehouse": "berlin", "quantity": "5", "reason": "sneaky"},
    )

    assert (listing.status_code, page.status_code) == (200, 200)
    assert admin_url(StockItem, "adjust", item.pk) not in page.content.decode()
    assert admin_url(StockItem, "receive") not in listing.content.decode()
    assert (adjusted.status_code, received.status_code) == (403, 403)
    item.refresh_from_db()
    assert item.on_hand == 3
    assert StockMovement.objects.filter(stock_item=item).count() == 1


@pytest.mark.django_db
def test_stock_receipt_view_receives_at_a_warehouse_with_a_reason(client, product):
    # Given a warehouse user and a second warehouse that holds none of the product yet
    receiver = StaffFactory(groups=["warehouse"])
    client.force_login(receiver)
    WarehouseFactory(code="hamburg")
    url = admin_url(StockItem, "receive")

    listing = client.get(admin_url(StockItem, "changelist"))
    page = client.get(url, {"product": product.sku, "warehouse": "hamburg"})
    response = client.post(
        url,
        {"product": product.sku, "warehouse": "hamburg", "quantity": "7", "reason": "PO 4711"},
        follow=True,
    )

    # Then the stock item exists with 7 on hand and the ledger has a receipt by them
    assert url in listing.content.decode()
    assert page.context["form"].initial == {"product": product.sku, "warehouse": "hamburg"}
    item = StockItem.objects.get(product=product, warehouse__code="hamburg")
    assert (item.on_hand, item.reserved) == (7, 0)
    assert response.redirect_chain == [(admin_url(StockItem, "change", item.pk), 302)]
    movement = StockMovement.objects.get(stock_item=item)
    assert (movement.kind, movement.on_hand_delta, movement.reason, movement.actor) == (
        StockMovement.Kind.RECEIPT,
        7,
        "PO 4711",
        receiver,
    )
    assert messages_of(response) == [
        f"Received 7 of {product.sku} at hamburg: on hand 7, reserved 0."
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("quantity", ["0", "-3", "x"])
def test_stock_receipt_needs_a_positive_quantity(admin_client, product, quantity):
    response = admin_client.post(
        admin_url(StockItem, "receive"),
        {"product": product.sku, "warehouse": "berlin", "quantity": quantity, "reason": "r"},
    )

    assert response.status_code == 200
    assert "quantity" in response.context["form"].errors
    assert StockItem.objects.get(product=product).on_hand == 3


@pytest.mark.django_db
def test_stock_item_change_page_links_to_the_adjustment(admin_client, product):
    item = StockItem.objects.get(product=product)

    response = admin_client.get(admin_url(StockItem, "change", item.pk))

    assert admin_url(StockItem, "adjust", item.pk) in response.content.decode()


@pytest.mark.django_db
def test_stock_item_counts_cannot_be_changed_by_posting_the_change_form(admin_client, product):
    item = StockItem.objects.get(product=product)

    response = admin_client.post(
        admin_url(StockItem, "change", item.pk),
        {
            "product": item.product_id,
            "warehouse": item.warehouse_id,
            "on_hand": "999",
            "reserved": "0",
        },
    )

    assert response.status_code == 403
    item.refresh_from_db()
    assert item.on_hand == 3
    assert admin_client.get(admin_url(StockItem, "add")).status_code == 403
    assert admin_client.post(admin_url(StockItem, "delete", item.pk)).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("model", [StockMovement, Reservation, IdempotencyKey])
def test_ledgers_and_records_are_read_only(admin_client, model):
    assert admin_client.get(admin_url(model, "add")).status_code == 403
    page = admin_client.get(admin_url(model, "changelist"))
    assert page.status_code == 200
    assert not page.context["has_add_permission"]


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1999, "EUR", "19.99 EUR"),
        (5, "USD", "0.05 USD"),
        (-150, "EUR", "-1.50 EUR"),
        (1500, "JPY", "1,500 JPY"),
        (1234, "KWD", "1.234 KWD"),
    ],
)
def test_money_format_uses_the_currency_minor_unit(amount, currency, text):
    assert money_format(amount, currency) == text
