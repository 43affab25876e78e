"""Seed the benchmark database: warehouses, products, stock, users with API tokens."""

import argparse
import random
from dataclasses import dataclass


@dataclass
class Seeded:
    tokens: list[str]
    skus: list[str]
    user_ids: list[int]


def seed(args: argparse.Namespace) -> Seeded:
    """Warehouses, products, stock (through stock_adjust, so the ledger agrees), users."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

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
    unusable = make_password(None)
    users = User.objects.bulk_create(
        User(username=f"bench-{i:04d}", email=f"bench-{i:04d}@example.com", password=unusable)
        for i in range(args.users)
    )
    tokens = Token.objects.bulk_create(Token(key=Token.generate_key(), user=user) for user in users)
    return Seeded(
        tokens=[token.key for token in tokens],
        skus=[product.sku for product in products],
        user_ids=[user.pk for user in users],
    )
