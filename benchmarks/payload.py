"""What a benchmark checkout sends: random order lines and a shipping address."""

import random
from collections.abc import Sequence
from typing import Any

SHIPPING_ADDRESS = {
    "name": "Bench Customer",
    "line1": "1 Loopback Road",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


def random_lines(rng: random.Random, skus: Sequence[str], max_lines: int) -> list[dict[str, Any]]:
    count = rng.randint(1, max_lines)
    return [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in rng.sample(skus, count)]
