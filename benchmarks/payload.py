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


# What a --payment checkout pays with: Stripe's test Visa card, which every fake authorizes.
PAYMENT_METHOD = "pm_card_visa"


def checkout_body(
    lines: list[dict[str, Any]], email: str, payment_method: str = ""
) -> dict[str, Any]:
    """POST /api/v1/orders/'s body; with a payment method the order is paid for too."""
    body: dict[str, Any] = {"lines": lines, "email": email, "shipping_address": SHIPPING_ADDRESS}
    if payment_method:
        body["payment_method"] = payment_method
    return body


def payment_authorized(order: Any) -> bool:
    """Whether a checkout's 201 body shows its payment authorized for the order's total."""
    payment = order.get("payment") if isinstance(order, dict) else None
    return (
        isinstance(payment, dict)
        and payment.get("status") == "authorized"
        and payment.get("amount") == order.get("total")
    )
