"""Groups on the admin and the API from one table: for every staff group, the order
and return buttons and stock views the admin offers are exactly what the API lets the same person
do, asked of the API itself (a request without an Idempotency-Key, or without a body, is
answered 403 when refused and 400 when allowed, and changes nothing). The group model
permissions (access migration 0005) decide which records each group sees."""

import importlib
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from access.policy import staff_action_allowed
from access.roles import roles_of
from core.actors import Actor
from flows.admin import order_transition_legal, return_action_legal
from flows.place import OrderLineRequest, order_place
from flows.returns import (
    ReturnLineRequest,
    return_authorize,
    return_open,
    return_receive,
)
from flows.transitions import order_transition_by_name
from inventory.models import Product, StockItem, StockMovement
from orders.models import Order, Return
from orders.states import TRANSITIONS
from tests.conftest import stock_receive
from tests.factories import ProductFactory, StaffFactory, UserFactory, WarehouseFactory

pytestmark = pytest.mark.django_db

ADDRESS = {"name": "Ada", "line1": "1 Way", "city": "London", "postal_code": "N1", "country": "GB"}
GROUPS = [("support",), ("warehouse",), ("finance",), ("admin",), ("service",), ()]
# The order endpoints through which the API takes each transition; "transitions" is
# POST /orders/{id}/transitions/ with the transition's name.
API_ROUTES = {
    "cancel": ("cancel", "transitions"),
    "ship": ("ship", "transitions"),
    "refund": ("refund", "transitions"),
}


@pytest.fixture
def product(db: None) -> Product:
    product = ProductFactory(price=1000, currency="EUR")
    stock_receive(product, WarehouseFactory(code="berlin"), 20)
    return product


@pytest.fixture
def orders_in_every_state(product: Product) -> list[Order]:
    """pending, confirmed, routed, shipped, delivered: taken without a payment."""
    steps = ["confirm", "route", "ship", "deliver"]
    orders = []
    for count in range(len(steps) + 1):
        customer = UserFactory()
        order = order_place(
            customer=customer,
            email=customer.email,
            shipping_address=ADDRESS,
            lines=[OrderLineRequest(sku=product.sku, quantity=1)],
            actor=Actor(user=customer),
        )
        for transition in steps[:count]:
            order_transition_by_name(order_id=order.pk, transition=transition, actor=Actor.system())
        order.refresh_from_db()
        orders.append(order)
    return orders


def api_allows(client: Client, order: Order, transition: str) -> bool:
    """Ask the API, without acting: 403 refused, 400 (no Idempotency-Key) allowed."""
    answers = set()
    for route in API_ROUTES.get(transition, ("transitions",)):
        response = client.post(
            f"/api/v1/orders/{order.pk}/{route}/",
            {"transition": transition, "reason": "probe"},
            content_type="application/json",
        )
        answers.add(response.status_code)
    assert answers <= {400, 403}, answers
    return 400 in answers


@pytest.mark.parametrize("groups", GROUPS, ids=lambda groups: "+".join(groups) or "none")
def test_admin_offers_each_group_exactly_the_order_actions_the_api_allows(
    client: Client, orders_in_every_state: list[Order], groups: tuple[str, ...]
) -> None:
    user = StaffFactory(groups=list(groups))
    client.force_login(user)
    for order in orders_in_every_state:
        page = client.get(reverse("admin:orders_order_change", args=[order.pk]))
        offered = (
            [name for name, _, _ in page.context["order_actions"]]
            if page.status_code == 200
            else []
        )
        legal = [name for name in TRANSITIONS if order_transition_legal(order, name)]
        allowed = [name for name in legal if api_allows(client, order, name)]
        assert offered == allowed, (groups, order.status)
        # And a refused action's confirmation page is refused as well
        for name in set(legal) - set(offered):
            url = reverse("admin:orders_order_act", args=[order.pk, name])
            assert client.get(url).status_code == 403, (groups, name)
    order.refresh_from_db()
    assert order.status == "delivered"  # nothing was changed by asking


@pytest.fixture
def order_with_returns(product: Product) -> tuple[Order, list[Return]]:
    """A delivered order of 4 units with a return requested, one authorized and one
    received (taken without a payment)."""
    customer = UserFactory()
    order = order_place(
        customer=customer,
        email=customer.email,
        shipping_address=ADDRESS,
        lines=[OrderLineRequest(sku=product.sku, quantity=4)],
        actor=Actor(user=customer),
    )
    for transition in ("confirm", "route", "ship", "deliver"):
        order_transition_by_name(order_id=order.pk, transition=transition, actor=Actor.system())
    staff = Actor.system()
    returns = []
    for steps in range(3):
        opened = return_open(
            order_id=order.pk,
            lines=[ReturnLineRequest(product.sku, 1)],
            reason="probe",
            actor=staff,
        )
        if steps >= 1:
            return_authorize(order_id=order.pk, return_id=opened.pk, actor=staff)
        if steps >= 2:
            return_receive(
                order_id=order.pk,
                return_id=opened.pk,
                dispositions={},
                warehouse_code="",
                actor=staff,
            )
        opened.refresh_from_db()
        returns.append(opened)
    order.refresh_from_db()
    return order, returns


# The buttons each group gets on a requested, an authorized and a received return.
RETURN_BUTTONS = {
    ("support",): [["authorize", "reject", "cancel"], ["reject", "cancel", "receive"], ["refund"]],
    ("warehouse",): [[], ["receive"], []],
    ("finance",): [[], [], ["refund"]],
}


def api_allows_return(client: Client, url: str) -> bool:
    """Ask the returns API, without acting: 403 refused, 400 (no Idempotency-Key) allowed."""
    response = client.post(url, {}, content_type="application/json")
    assert response.status_code in (400, 403), response.status_code
    return response.status_code == 400


@pytest.mark.parametrize("groups", GROUPS, ids=lambda groups: "+".join(groups) or "none")
def test_admin_offers_each_group_exactly_the_return_actions_the_api_allows(
    client: Client, order_with_returns: tuple[Order, list[Return]], groups: tuple[str, ...]
) -> None:
    order, returns = order_with_returns
    client.force_login(StaffFactory(groups=list(groups)))
    base = f"/api/v1/orders/{order.pk}/returns/"

    page = client.get(reverse("admin:orders_order_change", args=[order.pk]))
    forms_offered = (
        [name for name, _, _ in page.context["order_forms"]] if page.status_code == 200 else []
    )
    offered = (
        {
            str(r.pk): [name for name, _, _ in actions]
            for r, actions in page.context["return_actions"]
        }
        if page.status_code == 200
        else {str(r.pk): [] for r in returns}
    )

    # Open a return: offered exactly when POST .../returns/ is allowed
    assert ("return_open" in forms_offered) == api_allows_return(client, base), groups
    open_page = client.get(reverse("admin:orders_order_return_open", args=[order.pk]))
    assert open_page.status_code == (200 if "return_open" in forms_offered else 403)
    for return_request in returns:
        legal = [
            action
            for action in ("authorize", "reject", "cancel", "receive", "refund")
            if return_action_legal(return_request, action)
        ]
        allowed = [
            action
            for action in legal
            if api_allows_return(client, f"{base}{return_request.pk}/{action}/")
        ]
        assert offered[str(return_request.pk)] == allowed, (groups, return_request.status)
        # And a refused action's confirmation page is refused as well
        for action in set(legal) - set(allowed):
            url = reverse(
                "admin:orders_order_return_act", args=[order.pk, return_request.pk, action]
            )
            assert client.get(url).status_code == 403, (groups, action)
    # And what that comes to, for the three groups who work with returns
    expected = RETURN_BUTTONS.get(groups)
    if expected is not None:
        assert [offered[str(r.pk)] for r in returns] == expected, groups
    # Nothing was changed by asking
    assert [Return.objects.get(pk=r.pk).status for r in returns] == [
        "requested",
        "authorized",
        "received",
    ]


@pytest.mark.parametrize("groups", GROUPS, ids=lambda groups: "+".join(groups) or "none")
def test_admin_offers_stock_receipts_and_adjustments_to_whom_the_api_does(
    client: Client, product: Product, groups: tuple[str, ...]
) -> None:
    client.force_login(StaffFactory(groups=list(groups)))
    item = StockItem.objects.get(product=product)

    api = client.post("/api/v1/stock/adjustments/", {}, content_type="application/json")
    adjust = client.get(reverse("admin:inventory_stockitem_adjust", args=[item.pk]))
    receive = client.get(reverse("admin:inventory_stockitem_receive"))

    assert api.status_code in (400, 403)
    expected = 200 if api.status_code == 400 else 403
    assert (adjust.status_code, receive.status_code) == (expected, expected)
    assert StockMovement.objects.count() == 1


def test_support_is_refused_a_stock_adjustment_by_the_admin_and_the_api(
    client: Client, product: Product
) -> None:
    client.force_login(StaffFactory(groups=["support"]))
    item = StockItem.objects.get(product=product)

    api = client.post(
        "/api/v1/stock/adjustments/",
        {"sku": product.sku, "warehouse": "berlin", "quantity": 5, "reason": "r"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="support-adjust-1",
    )
    admin = client.post(
        reverse("admin:inventory_stockitem_adjust", args=[item.pk]),
        {"quantity": "5", "reason": "r"},
    )

    assert (api.status_code, admin.status_code) == (403, 403)
    item.refresh_from_db()
    assert item.on_hand == 20


# Which admin lists each group opens (200) and which it may not (403).
SEES = {
    "support": {
        "orders_order": 200,
        "payments_payment": 200,
        "fulfilment_shipment": 200,
        "fulfilment_fulfilmentrequest": 200,
        "inventory_stockitem": 200,
        "inventory_stockmovement": 403,
        "access_apikey": 403,
    },
    "warehouse": {
        "orders_order": 200,
        "payments_payment": 403,
        "fulfilment_shipment": 200,
        "inventory_stockitem": 200,
        "inventory_stockmovement": 200,
        "inventory_product": 200,
        "access_apikey": 403,
    },
    "finance": {
        "orders_order": 200,
        "payments_payment": 200,
        "payments_stripeevent": 200,
        "fulfilment_shipment": 403,
        "inventory_stockitem": 403,
        "access_apikey": 403,
    },
    "admin": {"access_apikey": 200, "orders_order": 403},
}


@pytest.mark.parametrize("group", sorted(SEES))
def test_each_group_sees_the_records_it_works_with(
    client: Client, orders_in_every_state: list[Order], group: str
) -> None:
    user: Any = StaffFactory(groups=[group])
    client.force_login(user)

    seen = {
        name: client.get(reverse(f"admin:{name}_changelist")).status_code for name in SEES[group]
    }

    assert seen == SEES[group]


@pytest.mark.parametrize("group", ["support", "warehouse", "finance"])
def test_who_sees_stock_in_the_admin_may_read_it_through_the_api(group: str) -> None:
    user: Any = StaffFactory(groups=[group])

    admin_sees = user.has_perm("inventory.view_stockitem")

    assert admin_sees == staff_action_allowed("stock.view", roles=roles_of(user))


def test_the_migration_grants_and_takes_back_the_group_permissions() -> None:
    migration = importlib.import_module("access.migrations.0005_staff_group_permissions")
    support = Group.objects.get(name="support")

    migration.revoke(apps, None)
    revoked = set(support.permissions.values_list("codename", flat=True))
    migration.grant(apps, None)
    granted = set(support.permissions.values_list("content_type__app_label", "codename"))

    assert "view_order" not in revoked
    assert {f"{app}.{codename}" for app, codename in granted} == set(
        migration.PERMISSIONS_OF_GROUP["support"]
    )
