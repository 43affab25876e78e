"""Who may call which endpoint: every endpoint and method of the URLconf, against every
kind of caller, in one table. A new endpoint without a row here (and in access.policy)
fails the first test.

Allowed requests carry a body the endpoint rejects (400), or ask for something that does
not exist (404), or a transition the order cannot take (409), so no request changes
anything and one order serves the whole row (the streams, which never end, get a
Last-Event-ID they reject); 401, 403 and 404 are refusals.
"""

import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from access.policy import RULES, markdown_table
from access.scopes import ALL_SCOPES
from access.services import api_key_create, api_key_revoke
from core.actors import Actor
from flows.place import OrderLineRequest, order_place
from inventory.models import StockItem
from orders.states import OrderStatus
from tests.conftest import api_key_for, order_payload
from tests.factories import StaffFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent.parent
MISSING_KEY_ID = 999_999_999

# The callers, in the order of the status columns below.
CALLERS = (
    "anonymous",
    "bad_key",
    "expired_key",
    "revoked_key",
    "customer_a",  # owns the order
    "customer_a_read_only",  # customer A with catalog:read and orders:read only
    "customer_b",  # another customer, on A's order
    "staff_no_group",
    "support",
    "warehouse",
    "finance",
    "admin",  # a superuser: every staff group
    "for_customer_a",  # a storefront key acting for customer A
    "for_customer_b",  # the storefront acting for customer B, on A's order
)

# (method, url name): (scope, statuses in CALLERS order)
#                                        anon bad exp rev  A  Aro  B  none sup  wh  fin adm forA forB
MATRIX: dict[tuple[str, str], tuple[str | None, tuple[int, ...]]] = {
    ("GET", "product-list"): ("catalog:read", (401, 401, 401, 401, 200, 200, 200, 403, 200, 200, 200, 200, 200, 200)),
    ("POST", "product-list"): ("catalog:write", (401, 401, 401, 401, 403, 403, 403, 403, 403, 400, 403, 400, 403, 403)),
    ("GET", "product-detail"): ("catalog:read", (401, 401, 401, 401, 200, 200, 200, 403, 200, 200, 200, 200, 200, 200)),
    ("GET", "warehouse-list"): ("stock:read", (401, 401, 401, 401, 403, 403, 403, 403, 200, 200, 403, 200, 403, 403)),
    ("POST", "warehouse-list"): ("stock:write", (401, 401, 401, 401, 403, 403, 403, 403, 403, 400, 403, 400, 403, 403)),
    ("GET", "stock-list"): ("stock:read", (401, 401, 401, 401, 403, 403, 403, 403, 200, 200, 403, 200, 403, 403)),
    ("POST", "stock-adjustment-create"): ("stock:write", (401, 401, 401, 401, 403, 403, 403, 403, 403, 400, 403, 400, 403, 403)),
    ("GET", "order-list"): ("orders:read", (401, 401, 401, 401, 200, 200, 200, 403, 200, 200, 200, 200, 200, 200)),
    ("POST", "order-list"): ("orders:write", (401, 401, 401, 401, 400, 403, 400, 403, 403, 403, 403, 403, 400, 400)),
    ("GET", "order-detail"): ("orders:read", (401, 401, 401, 401, 200, 200, 404, 403, 200, 200, 200, 200, 200, 404)),
    ("GET", "order-history"): ("orders:read", (401, 401, 401, 401, 200, 200, 404, 403, 200, 200, 200, 200, 200, 404)),
    ("POST", "order-pay"): ("orders:write", (401, 401, 401, 401, 400, 403, 404, 403, 403, 403, 403, 403, 400, 404)),
    ("POST", "order-cancel"): ("orders:write", (401, 401, 401, 401, 400, 403, 404, 403, 400, 403, 403, 400, 400, 404)),
    ("POST", "order-cancel-rest"): ("orders:write", (401, 401, 401, 401, 403, 403, 403, 403, 400, 403, 403, 400, 403, 403)),
    ("POST", "order-ship"): ("shipments:write", (401, 401, 401, 401, 403, 403, 403, 403, 403, 409, 403, 409, 403, 403)),
    ("POST", "order-refund"): ("refunds:write", (401, 401, 401, 401, 403, 403, 403, 403, 400, 403, 400, 400, 403, 403)),
    ("POST", "order-transition"): ("transitions:write", (401, 401, 401, 401, 403, 403, 403, 403, 400, 400, 400, 400, 403, 403)),
    ("GET", "order-return-list"): ("orders:read", (401, 401, 401, 401, 200, 200, 404, 403, 200, 200, 200, 200, 200, 404)),
    ("POST", "order-return-list"): ("orders:write", (401, 401, 401, 401, 400, 403, 404, 403, 400, 403, 403, 400, 400, 404)),
    ("POST", "order-edit-list"): ("orders:write", (401, 401, 401, 401, 400, 403, 404, 403, 400, 403, 403, 400, 400, 404)),
    # Edit reads and commits name an edit that does not exist: 404 once allowed.
    ("GET", "order-edit-detail"): ("orders:read", (401, 401, 401, 401, 404, 404, 404, 403, 404, 404, 404, 404, 404, 404)),
    ("POST", "order-edit-commit"): ("orders:write", (401, 401, 401, 401, 404, 403, 404, 403, 404, 403, 403, 404, 404, 404)),
    # Return actions and reads name a return that does not exist: 404 once allowed.
    ("GET", "order-return-detail"): ("orders:read", (401, 401, 401, 401, 404, 404, 404, 403, 404, 404, 404, 404, 404, 404)),
    ("POST", "order-return-authorize"): ("orders:write", (401, 401, 401, 401, 403, 403, 403, 403, 404, 403, 403, 404, 403, 403)),
    ("POST", "order-return-reject"): ("orders:write", (401, 401, 401, 401, 403, 403, 403, 403, 404, 403, 403, 404, 403, 403)),
    ("POST", "order-return-cancel"): ("orders:write", (401, 401, 401, 401, 404, 403, 404, 403, 404, 403, 403, 404, 404, 404)),
    ("POST", "order-return-receive"): ("shipments:write", (401, 401, 401, 401, 403, 403, 403, 403, 404, 404, 403, 404, 403, 403)),
    ("POST", "order-return-refund"): ("refunds:write", (401, 401, 401, 401, 403, 403, 403, 403, 404, 403, 404, 404, 403, 403)),
    ("GET", "order-events"): ("orders:read", (401, 401, 401, 401, 200, 200, 404, 403, 200, 200, 200, 200, 200, 404)),
    ("GET", "order-event-stream"): ("orders:read", (401, 401, 401, 401, 400, 400, 404, 403, 400, 400, 400, 400, 400, 404)),
    ("GET", "event-feed"): ("events:read", (401, 401, 401, 401, 403, 403, 403, 403, 200, 403, 403, 200, 403, 403)),
    ("POST", "event-subscription-redeliver"): ("webhooks:write", (401, 401, 401, 401, 403, 403, 403, 403, 400, 403, 403, 400, 403, 403)),
    ("POST", "event-subscription-enable"): ("webhooks:write", (401, 401, 401, 401, 403, 403, 403, 403, 404, 403, 403, 404, 403, 403)),
    ("GET", "event-feed-stream"): ("events:read", (401, 401, 401, 401, 403, 403, 403, 403, 400, 403, 403, 400, 403, 403)),
    ("GET", "notification-preferences"): ("orders:read", (401, 401, 401, 401, 200, 200, 200, 403, 403, 403, 403, 403, 200, 200)),
    ("PATCH", "notification-preferences"): ("orders:write", (401, 401, 401, 401, 400, 403, 400, 403, 403, 403, 403, 403, 400, 400)),
    ("GET", "api-key-list"): ("api_keys:read", (401, 401, 401, 401, 403, 403, 403, 403, 403, 403, 403, 200, 403, 403)),
    ("POST", "api-key-list"): ("api_keys:write", (401, 401, 401, 401, 403, 403, 403, 403, 403, 403, 403, 400, 403, 403)),
    ("GET", "api-key-detail"): ("api_keys:read", (401, 401, 401, 401, 403, 403, 403, 403, 403, 403, 403, 404, 403, 403)),
    ("DELETE", "api-key-detail"): ("api_keys:write", (401, 401, 401, 401, 403, 403, 403, 403, 403, 403, 403, 404, 403, 403)),
    ("POST", "api-key-rotate"): ("api_keys:write", (401, 401, 401, 401, 403, 403, 403, 403, 403, 403, 403, 404, 403, 403)),
    # Signed endpoints take no key: an unsigned request fails its signature check.
    ("POST", "stripe-webhook"): (None, (400,) * len(CALLERS)),
    ("POST", "fulfilment-callback"): (None, (401,) * len(CALLERS)),
    ("POST", "notifications-unsubscribe"): (None, (400,) * len(CALLERS)),
}  # fmt: skip

# Single-scope keys of a superuser: the endpoints of that scope answer as for `admin`,
# every other endpoint 403.
SCOPE_CALLERS = tuple(f"scope:{scope}" for scope in ALL_SCOPES)


def _url_endpoints(patterns: list[Any], prefix: str = "") -> dict[tuple[str, str], str]:
    """(method, url name) -> route of every API endpoint in the URLconf."""
    found: dict[tuple[str, str], str] = {}
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found |= _url_endpoints(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
            view = pattern.callback.view_class
            for method in ("get", "post", "put", "patch", "delete"):
                if hasattr(view, method):
                    found[(method.upper(), str(pattern.name))] = route
    return found


URL_ENDPOINTS = _url_endpoints(get_resolver().url_patterns)


def test_every_endpoint_of_the_urlconf_has_a_row_here_and_in_the_policy():
    policy = {(rule.method, rule.url_name) for rule in RULES}

    assert set(MATRIX) == set(URL_ENDPOINTS)
    assert policy == set(URL_ENDPOINTS)


def test_the_policy_table_names_the_scopes_and_paths_this_table_expects():
    for rule in RULES:
        scope, _ = MATRIX[(rule.method, rule.url_name)]
        route = URL_ENDPOINTS[(rule.method, rule.url_name)]
        assert rule.scope == scope, rule
        documented = "/" + re.sub(
            r"<\w+:(\w+)>",
            lambda m: "{" + m[1] + "}" if m[1] in ("sku", "return_id", "edit_id") else "{id}",
            route,
        )
        assert documented == "/api/v1" + rule.path, rule


def test_readme_endpoint_table_is_the_policy_table():
    readme = (ROOT / "README.md").read_text()
    generated = readme.split("<!-- endpoint-table:start -->\n", 1)[1].split(
        "\n<!-- endpoint-table:end -->", 1
    )[0]

    assert generated == markdown_table()


@pytest.fixture
def world(stocked_product):
    """Customers A and B, a storefront, staff of each kind, and A's pending order."""
    product = stocked_product(quantities={"main": 10})
    customer_a, customer_b = UserFactory(), UserFactory()
    order = order_place(
        customer=customer_a,
        email=customer_a.email,
        shipping_address=order_payload([])["shipping_address"],
        lines=[OrderLineRequest(product.sku, 2)],
        actor=Actor(user=customer_a),
    )
    return {
        "product": product,
        "order": order,
        "customer_a": customer_a,
        "customer_b": customer_b,
        "storefront": UserFactory(username=f"storefront-{uuid.uuid4().hex[:6]}"),
        "admin": StaffFactory(is_superuser=True, groups=[]),
    }


def caller_client(caller: str, world: dict[str, Any]) -> APIClient:
    client = APIClient()
    a, b = world["customer_a"], world["customer_b"]
    headers: dict[str, str] = {}
    if caller == "anonymous":
        return client
    if caller == "bad_key":
        key = "oms_" + "x" * 40
    elif caller == "expired_key":
        key = api_key_for(a, expires_at=timezone.now() - timedelta(seconds=1))
    elif caller == "revoked_key":
        issued = api_key_create(user=a, name="t", scopes=ALL_SCOPES, actor=Actor.system())
        api_key_revoke(key_id=issued.api_key.pk, actor=Actor.system())
        key = issued.key
    elif caller in ("customer_a", "customer_b"):
        key = api_key_for(a if caller == "customer_a" else b)
    elif caller == "customer_a_read_only":
        key = api_key_for(a, scopes=["catalog:read", "orders:read"])
    elif caller == "staff_no_group":
        key = api_key_for(StaffFactory(groups=[]))
    elif caller in ("support", "warehouse", "finance"):
        key = api_key_for(StaffFactory(groups=[caller]))
    elif caller == "admin":
        key = api_key_for(world["admin"])
    elif caller.startswith("for_customer_"):
        key = api_key_for(world["storefront"], act_as_customer=True)
        named = a if caller == "for_customer_a" else b
        headers["HTTP_OMS_ON_BEHALF_OF"] = named.username
    elif caller.startswith("scope:"):
        key = api_key_for(world["admin"], scopes=[caller.removeprefix("scope:")])
    else:
        raise AssertionError(caller)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}", **headers)
    return client


def request_for(method: str, name: str, world: dict[str, Any]) -> tuple[str, Any]:
    """The path and a harmless body for this endpoint."""
    route = URL_ENDPOINTS[(method, name)]
    path = "/" + route.replace("<uuid:order_id>", str(world["order"].pk))
    path = path.replace("<str:sku>", world["product"].sku)
    path = path.replace("<uuid:return_id>", str(uuid.uuid4()))
    path = path.replace("<uuid:edit_id>", str(uuid.uuid4()))
    path = path.replace("<int:key_id>", str(MISSING_KEY_ID))
    path = path.replace("<int:subscription_id>", str(MISSING_KEY_ID))
    bodies = {
        "order-cancel": {"reason": "x" * 501},
        "order-cancel-rest": {"reason": "x" * 501},
        "order-refund": {"amount": 0},
        "order-ship": None,
        "notification-preferences": {"order_shipped": "not a boolean"},
    }
    return path, bodies.get(name, {})


def send(client: APIClient, method: str, path: str, body: Any) -> Any:
    if method == "GET" and path.endswith("/stream/"):
        return client.get(path, HTTP_LAST_EVENT_ID="not-an-event-id")
    if method == "GET":
        return client.get(path)
    if method == "DELETE":
        return client.delete(path)
    if method == "PATCH":
        return client.patch(path, body, format="json")
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)


def expected_for(caller: str) -> dict[tuple[str, str], int]:
    if caller.startswith("scope:"):
        scope = caller.removeprefix("scope:")
        admin = CALLERS.index("admin")
        return {
            endpoint: statuses[admin] if row_scope in (scope, None) else 403
            for endpoint, (row_scope, statuses) in MATRIX.items()
        }
    column = CALLERS.index(caller)
    return {endpoint: statuses[column] for endpoint, (_, statuses) in MATRIX.items()}


@pytest.mark.django_db
@pytest.mark.parametrize("caller", CALLERS + SCOPE_CALLERS)
def test_each_caller_gets_the_status_the_matrix_says_and_changes_nothing(caller, world):
    # given
    client = caller_client(caller, world)
    order = world["order"]

    # when every endpoint is called
    answered = {}
    for method, name in MATRIX:
        path, body = request_for(method, name, world)
        response = send(client, method, path, body)
        answered[(method, name)] = response.status_code
        if response.status_code >= 400:
            assert response["Content-Type"] == "application/problem+json", (method, name)

    # then
    assert answered == expected_for(caller)
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert order.status_changes.count() == 1
    assert StockItem.objects.get(product=world["product"]).reserved == 2
