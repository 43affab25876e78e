import hashlib
import hmac
import string
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from access.models import ApiKey
from access.scopes import ALL_SCOPES, Scope
from access.services import KEY_PREFIX, api_key_create, key_hash
from core.actors import Actor
from inventory.models import Product, StockItem, Warehouse
from inventory.services import stock_adjust

WAREHOUSES = [
    ("berlin", "Berlin DC", "eu-central", 10),
    ("hamburg", "Hamburg DC", "eu-central", 5),
]
PRODUCTS = [
    ("TSHIRT-BLK-M", "T-shirt black M", 1999, "EUR"),
    ("MUG-LOGO", "Logo mug", 1250, "EUR"),
    ("HOODIE-GRY-L", "Hoodie grey L", 4999, "EUR"),
]
STOCK = {
    ("TSHIRT-BLK-M", "berlin"): 50,
    ("TSHIRT-BLK-M", "hamburg"): 20,
    ("MUG-LOGO", "berlin"): 100,
    ("HOODIE-GRY-L", "hamburg"): 5,
}


_BASE62 = string.digits + string.ascii_letters


def demo_key(username: str) -> str:
    """The demo key of a user: derived from SECRET_KEY, so every run prints the same
    key, which keeps working, and another installation's demo keys differ."""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"oms-demo-key:{username}".encode(), hashlib.sha256
    ).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(40):
        number, index = divmod(number, 62)
        chars.append(_BASE62[index])
    return KEY_PREFIX + "".join(chars)


def demo_key_ensure(user: Any, *, name: str, scopes: list[str], act_as_customer: bool) -> str:
    key = demo_key(user.get_username())
    if not ApiKey.objects.filter(key_hash=key_hash(key)).exists():
        api_key_create(
            user=user,
            name=name,
            scopes=scopes,
            act_as_customer=act_as_customer,
            actor=Actor.system(),
            key=key,
        )
    return key


class Command(BaseCommand):
    help = (
        "Load demo warehouses, products, stock, a customer, a storefront and a staff user; "
        "print their API keys."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--warehouse-url",
            default="",
            help="fulfilment URL for the demo warehouses (e.g. the fake warehouse)",
        )
        parser.add_argument("--warehouse-secret", default="", help="their signing secret")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        with transaction.atomic():
            staff, created = user_model.objects.get_or_create(
                username="staff", defaults={"is_staff": True, "is_superuser": True}
            )
            if created:
                staff.set_password("staff")
                staff.save()
            customer, created = user_model.objects.get_or_create(
                username="alice", defaults={"email": "alice@example.com"}
            )
            if created:
                customer.set_password("alice")
                customer.save()
            storefront, created = user_model.objects.get_or_create(username="storefront")
            if created:
                storefront.set_unusable_password()
                storefront.save()
            for code, name, region, priority in WAREHOUSES:
                Warehouse.objects.get_or_create(
                    code=code, defaults={"name": name, "region": region, "priority": priority}
                )
            if options["warehouse_url"]:
                Warehouse.objects.filter(code__in=[w[0] for w in WAREHOUSES]).update(
                    fulfilment_url=options["warehouse_url"],
                    fulfilment_secret=options["warehouse_secret"],
                )
            for sku, name, price, currency in PRODUCTS:
                Product.objects.get_or_create(
                    sku=sku, defaults={"name": name, "price": price, "currency": currency}
                )
        actor = Actor(user=staff)
        for (sku, warehouse_code), quantity in STOCK.items():
            exists = StockItem.objects.filter(
                product__sku=sku, warehouse__code=warehouse_code
            ).exists()
            if not exists:
                stock_adjust(
                    sku=sku,
                    warehouse_code=warehouse_code,
                    quantity=quantity,
                    reason="demo stock",
                    actor=actor,
                )
        customer_scopes = [
            Scope.CATALOG_READ.value,
            Scope.ORDERS_READ.value,
            Scope.ORDERS_WRITE.value,
        ]
        staff_key = demo_key_ensure(
            staff, name="demo", scopes=list(ALL_SCOPES), act_as_customer=False
        )
        customer_key = demo_key_ensure(
            customer, name="demo", scopes=customer_scopes, act_as_customer=False
        )
        storefront_key = demo_key_ensure(
            storefront, name="demo storefront", scopes=customer_scopes, act_as_customer=True
        )
        self.stdout.write("Demo data loaded. API keys (Authorization: Bearer <key>):")
        self.stdout.write(f"  customer   'alice' (password alice): {customer_key}")
        self.stdout.write(f"  staff      'staff' (password staff): {staff_key}")
        self.stdout.write(
            f"  storefront (acts for customers, OMS-On-Behalf-Of: alice): {storefront_key}"
        )
