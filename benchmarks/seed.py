"""Seed the benchmark database: warehouses, products, stock, users with API tokens."""

import argparse
import random
from dataclasses import dataclass
from typing import Any


@dataclass
class Seeded:
    tokens: list[str]
    skus: list[str]
    user_ids: list[int]
    # A customer with a long history (--history-orders delivered orders): their token.
    history_token: str = ""
    history_customer_id: int | None = None
    history_orders: int = 0


def seed(args: argparse.Namespace) -> Seeded:
    """Warehouses, products, stock (through stock_adjust, so the ledger agrees), users."""
    from django.apps import apps
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    from core.actors import Actor
    from inventory.models import Product
    from inventory.services import stock_adjust, warehouse_create

    rng = random.Random(args.seed)  # noqa: S311 - test data, not secrets
    system = Actor.system(request_id="benchmark-seed")
    codes = [f"bench-w{i}" for i in range(1, args.warehouses + 1)]
    for i, code in enumerate(codes):
        warehouse_create(
            code=code,
            name=f"Benchmark DC {i + 1}",
            region="bench",
            priority=10 * (args.warehouses - i),
            actor=system,
        )
    products = Product.objects.bulk_create(
        Product(
            sku=f"BENCH-{i:05d}",
            name=f"Benchmark product {i}",
            price=rng.randrange(500, 20_000),
            currency="EUR",
        )
        for i in range(args.products)
    )
    for product in products:
        # Each product sits in up to two warehouses, so allocation has a choice.
        for code in rng.sample(codes, min(2, len(codes))):
            stock_adjust(
                sku=product.sku,
                warehouse_code=code,
                quantity=args.stock,
                reason="benchmark stock",
                actor=system,
            )
    buckets = getattr(args, "stock_buckets", 1)  # the event benchmark's options have none
    if buckets > 1:
        _stock_split(products[: args.hot_products or None], buckets, system)
    unusable = make_password(None)
    users = User.objects.bulk_create(
        User(username=f"bench-{i:04d}", email=f"bench-{i:04d}@example.com", password=unusable)
        for i in range(args.users)
    )
    tokens = api_keys_create(users) if apps.is_installed("access") else _drf_tokens_create(users)
    seeded = Seeded(
        tokens=tokens,
        skus=[product.sku for product in products],
        user_ids=[user.pk for user in users],
    )
    if getattr(args, "history_orders", 0) > 0:
        history_seed(args, seeded, products, rng)
    return seeded


def history_seed(args: argparse.Namespace, seeded: Seeded, products: list[Any], rng: Any) -> None:
    """One more customer with `--history-orders` delivered orders of 1-3 lines, one a
    minute back from now: three set-based statements (the orders, their created_at
    spread by row number, the lines), no reservations (delivered stock is gone)."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.db import connection
    from django.utils import timezone

    from orders.models import Order, OrderLine
    from orders.states import OrderStatus

    customer = User.objects.create(
        username="bench-history",
        email="bench-history@example.com",
        password=make_password(None),
    )
    chosen = [
        rng.sample(products, rng.randint(1, min(3, len(products))))
        for _ in range(args.history_orders)
    ]
    address = {
        "name": "Ada History",
        "line1": "1 Long Road",
        "city": "Berlin",
        "postal_code": "10115",
        "country": "DE",
    }
    now = timezone.now()
    orders = Order.objects.bulk_create(
        Order(
            customer=customer,
            email=customer.email,
            shipping_address=address,
            currency="EUR",
            subtotal_amount=sum(p.price for p in lines),
            total_amount=sum(p.price for p in lines),
            status=OrderStatus.DELIVERED,
            reservation_expires_at=now,
        )
        for lines in chosen
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orders_order o SET created_at = now() - n.rank * interval '1 minute', "
            "updated_at = now() - n.rank * interval '1 minute' "
            "FROM (SELECT id, row_number() OVER (ORDER BY id) AS rank FROM orders_order "
            "WHERE customer_id = %s) n WHERE o.id = n.id",
            [customer.pk],
        )
    OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            product=product,
            sku=product.sku,
            name=product.name,
            unit_price=product.price,
            quantity=1,
            line_total=product.price,
        )
        for order, lines in zip(orders, chosen, strict=True)
        for product in lines
    )
    # The created_at UPDATE left a dead version of every order (and its index entries);
    # autovacuum would clear them soon in production, so clear them now.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE orders_order")
    seeded.history_token = api_keys_create([customer])[0]
    seeded.history_customer_id = customer.pk
    seeded.history_orders = len(orders)


def _stock_split(products: list[Any], buckets: int, actor: Any) -> None:
    """Split the products' stock items over bucket rows (--stock-buckets)."""
    from inventory.models import StockItem
    from inventory.services import stock_buckets_set

    for sku, code in StockItem.objects.filter(product__in=products).values_list(
        "product__sku", "warehouse__code"
    ):
        stock_buckets_set(sku=sku, warehouse_code=code, buckets=buckets, actor=actor)


def api_keys_create(users: list[Any]) -> list[str]:
    """One API key per user (sent with the Token scheme, which accepts any key)."""
    from access.models import ApiKey
    from access.scopes import ALL_SCOPES
    from access.services import key_display_prefix, key_generate, key_hash

    keys = [key_generate() for _ in users]
    ApiKey.objects.bulk_create(
        ApiKey(
            user=user,
            name="benchmark",
            prefix=key_display_prefix(key),
            key_hash=key_hash(key),
            scopes=list(ALL_SCOPES),
        )
        for user, key in zip(users, keys, strict=True)
    )
    return keys


def _drf_tokens_create(users: list[Any]) -> list[str]:
    """Plaintext DRF tokens, for refs from before API keys (--ref)."""
    from rest_framework.authtoken.models import Token

    tokens = Token.objects.bulk_create(Token(key=Token.generate_key(), user=user) for user in users)
    return [token.key for token in tokens]
