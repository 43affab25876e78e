from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

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


class Command(BaseCommand):
    help = "Load demo warehouses, products, stock, a customer and a staff user; print tokens."

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
        staff_token, _ = Token.objects.get_or_create(user=staff)
        customer_token, _ = Token.objects.get_or_create(user=customer)
        self.stdout.write("Demo data loaded.")
        self.stdout.write(f"  customer 'alice' (password alice): Token {customer_token.key}")
        self.stdout.write(f"  staff    'staff' (password staff): Token {staff_token.key}")
