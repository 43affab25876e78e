"""Orders for the admin tests, made through the real flows: placed, paid with the fake
Stripe server (test modules pull it in with
``pytest_plugins = ("tests.support.fake_stripe", "tests.support.fake_warehouse")``), and
routed to a fake warehouse over HTTP."""

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User

from core.actors import Actor
from core.breakers import circuit_breakers_reset
from fakes.warehouse import FakeWarehouse
from flows.pay import order_pay
from flows.place import OrderLineRequest, order_place
from flows.routing import order_route
from inventory.models import Product, Warehouse
from orders.models import Order
from orders.states import OrderStatus
from tests.conftest import stock_receive
from tests.factories import ProductFactory, StaffFactory, UserFactory, WarehouseFactory
from tests.support.fake_stripe import FakeStripeServer
from tests.support.fake_warehouse import WAREHOUSE_SECRET

GOOD_CARD = "pm_card_visa"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Analytical Way",
    "line2": "Flat 2",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}
PASSWORD = "correct horse battery staple"


def staff_group_permissions_grant() -> None:
    """Give the staff groups their model permissions (access migration 0005) again: a
    transactional test that ran before flushed what the migration wrote."""
    migration = importlib.import_module("access.migrations.0005_staff_group_permissions")
    migration.grant(apps, None)


@pytest.fixture(autouse=True)
def _staff_group_permissions(db: None) -> None:
    staff_group_permissions_grant()


@pytest.fixture
def stripe_provider(fake_stripe: FakeStripeServer, settings: Any) -> Iterator[FakeStripeServer]:
    settings.STRIPE_API_BASE = fake_stripe.url
    settings.STRIPE_API_KEY = fake_stripe.api_key
    settings.PAYMENT_BREAKER_FAIL_MAX = 1000
    settings.FULFILMENT_CALLBACK_BASE_URL = "http://oms.test"
    settings.FULFILMENT_READ_TIMEOUT_SECONDS = 2.0
    circuit_breakers_reset()
    yield fake_stripe
    circuit_breakers_reset()


@pytest.fixture
def warehouse(fake_warehouse: FakeWarehouse, db: None) -> Warehouse:
    fake_warehouse.configure(auto_callbacks=False)
    return WarehouseFactory(
        code="leeds",
        fulfilment_url=fake_warehouse.requests_url,
        fulfilment_secret=WAREHOUSE_SECRET,
    )


@pytest.fixture
def stocked(warehouse: Warehouse) -> Product:
    product = ProductFactory(price=1999, currency="EUR", name="Brass gear")
    stock_receive(product, warehouse, 10)
    return product


@pytest.fixture
def paid_order(stripe_provider: FakeStripeServer, stocked: Product) -> Callable[..., Order]:
    """paid_order(quantity=2, routed=False): placed, authorized at the fake Stripe server
    (confirmed), and when `routed` sent to the fake warehouse, which accepts it."""

    def make(quantity: int = 2, *, routed: bool = False) -> Order:
        customer = UserFactory()
        order = order_place(
            customer=customer,
            email=customer.email,
            shipping_address=ADDRESS,
            lines=[OrderLineRequest(sku=stocked.sku, quantity=quantity)],
            actor=Actor(user=customer),
        )
        order_pay(order_id=order.pk, payment_method=GOOD_CARD, actor=Actor(user=customer))
        if routed:
            order_route(order_id=order.pk)
        order.refresh_from_db()
        assert order.status == (OrderStatus.ROUTED if routed else OrderStatus.CONFIRMED)
        return order

    return make


@pytest.fixture
def staff_in() -> Callable[..., User]:
    """staff_in("support"): a staff user in exactly these groups, with a password."""

    def make(*groups: str) -> User:
        user = StaffFactory(groups=list(groups), password=PASSWORD)
        assert isinstance(user, User)
        return user

    return make
