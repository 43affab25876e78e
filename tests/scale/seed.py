"""The data the scale tests start from, written through the services into whichever
database DATABASE_URL names; run by `manage.py shell -c` in a child process. Prints
the API keys and ids as JSON."""

import json

from core.actors import Actor
from flows.place import OrderLineRequest, order_place
from tests.conftest import api_key_for, stock_receive
from tests.factories import ProductFactory, StaffFactory, UserFactory, WarehouseFactory

SKU = "SKU-SCALE"
ADDRESS = {
    "name": "A",
    "line1": "1 Road",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


def main() -> None:
    warehouse = WarehouseFactory(code="wh-scale")
    product = ProductFactory(sku=SKU, price=1250)
    stock_receive(product, warehouse, 100_000)
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    service = StaffFactory(username="feed-reader", groups=["service"])
    # Signs in to the admin with the factory's password, "password".
    UserFactory(username="admin", is_staff=True, is_superuser=True)
    bobs_order = order_place(
        customer=bob,
        email="bob@example.com",
        shipping_address=ADDRESS,
        lines=[OrderLineRequest(SKU, 1)],
        actor=Actor(user=bob),
    )
    print(
        json.dumps(
            {
                "alice": api_key_for(alice),
                "bob": api_key_for(bob),
                "service": api_key_for(service, scopes=["events:read"]),
                "bobs_order": str(bobs_order.pk),
            }
        )
    )
