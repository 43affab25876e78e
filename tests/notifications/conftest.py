"""Orders to write to, and a thread runner for the concurrency tests."""

from collections.abc import Callable
from typing import Any

import pytest

from core.actors import Actor
from flows.place import OrderLineRequest, order_place
from orders.models import Order
from tests.factories import UserFactory

SHIPPING_ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Analytical Way",
    "line2": "Flat 2",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}
FROM_EMAIL = "OMS Orders <orders@oms.test>"


@pytest.fixture(autouse=True)
def _email_settings(settings: Any) -> None:
    settings.DEFAULT_FROM_EMAIL = FROM_EMAIL
    settings.EMAIL_MESSAGE_ID_DOMAIN = "mail.oms.test"


@pytest.fixture
def make_order(stocked_product: Callable[..., Any]) -> Callable[..., Order]:
    """make_order(products=[(name, price, quantity)], currency="EUR") through order_place."""

    def make(
        products: list[tuple[str, int, int]] | None = None,
        *,
        currency: str = "EUR",
        email: str = "ada@example.com",
    ) -> Order:
        requests = []
        for name, price, quantity in products or [("Brass gear", 1999, 2)]:
            product = stocked_product(
                quantities={"main": quantity}, name=name, price=price, currency=currency
            )
            requests.append(OrderLineRequest(sku=product.sku, quantity=quantity))
        return order_place(
            customer=UserFactory(),
            email=email,
            shipping_address=SHIPPING_ADDRESS,
            lines=requests,
            actor=Actor.system(),
        )

    return make
