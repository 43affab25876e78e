"""Place an order: reserve its stock, and (at checkout with a payment method) pay for it.

Transactions: one for the order, its lines, the audit row and the reservation (the
conditional stock update last: the stock rows are the hot ones). A product that allows
backorders and is short gives what it has, and the rest becomes a backorder claim in
the same transaction, its product's counter raised by a conditional update within its
limit (inventory.backorders); a paid order with claims awaits stock (flows.backorders).
With a payment method, the payment then runs as flows.pay does: its own transactions
around, never across, the provider call.
"""

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from flows.metrics import checkout_observed
from flows.pay import order_pay
from inventory.backorders import BackorderRequest, backorder_claims_create
from inventory.errors import InsufficientStock, ReservationRaceLost, UnknownSku
from inventory.models import Product
from inventory.selectors import products_available
from inventory.services import (
    ReservationRequest,
    stock_plan,
    stock_plan_backordering,
    stock_reserve,
)
from orders.audit import order_event_record
from orders.errors import CurrencyMismatch
from orders.models import Order
from orders.services import OrderLineData, order_create
from pricing.base import PricedLine, PricingRequest
from pricing.services import order_quote

logger = logging.getLogger(__name__)

# How often a checkout re-plans after concurrent checkouts took its planned units.
RESERVATION_ATTEMPTS = 5


@dataclass(frozen=True)
class OrderLineRequest:
    sku: str
    quantity: int


def order_place(
    *,
    customer: User,
    email: str,
    shipping_address: dict[str, Any],
    lines: Sequence[OrderLineRequest],
    actor: Actor,
    on_created: Callable[[Order], None] | None = None,
    shipping_method: str = "standard",
) -> Order:
    """Create an order in pending_payment with all its stock reserved, or nothing at all.

    Shipping and tax come from the pricing provider (pricing.services.order_quote) before
    anything is written: ShippingUnavailable or TaxServiceUnavailable leave no order.
    `on_created` runs inside the order's transaction (e.g. to checkpoint an idempotency key).
    """
    with checkout_observed() as observation:
        order = _order_place(
            customer=customer,
            email=email,
            shipping_address=shipping_address,
            lines=lines,
            actor=actor,
            on_created=on_created,
            shipping_method=shipping_method,
        )
        observation.placed(currency=order.currency, total_amount=order.total_amount)
    return order


def _order_place(
    *,
    customer: User,
    email: str,
    shipping_address: dict[str, Any],
    lines: Sequence[OrderLineRequest],
    actor: Actor,
    on_created: Callable[[Order], None] | None = None,
    shipping_method: str = "standard",
) -> Order:
    quantities = {line.sku: line.quantity for line in lines}
    products = {
        product.sku: product
        for product in Product.objects.filter(sku__in=quantities, is_active=True)
    }
    unknown = sorted(set(quantities) - set(products))
    if unknown:
        raise UnknownSku(unknown)
    currencies = sorted({product.currency for product in products.values()})
    if len(currencies) != 1:
        raise CurrencyMismatch(f"Products are priced in {', '.join(currencies)}.")
    demand = {products[sku].pk: qty for sku, qty in quantities.items()}
    skus = {product.pk: sku for sku, product in products.items()}
    quote = order_quote(
        PricingRequest(
            lines=[PricedLine(sku, products[sku].price, qty) for sku, qty in quantities.items()],
            country=str(shipping_address.get("country", "")).upper(),
            currency=currencies[0],
            shipping_method=shipping_method,
        )
    )
    line_data = [
        OrderLineData(
            product_id=products[sku].pk,
            sku=sku,
            name=products[sku].name,
            unit_price=products[sku].price,
            quantity=qty,
            tax_amount=quote.line_taxes[sku],
        )
        for sku, qty in quantities.items()
    ]

    backordering = [product.pk for product in products.values() if product.backorder_limit > 0]
    for attempt in range(RESERVATION_ATTEMPTS):
        # A re-plan after a lost race takes a hot product's fullest buckets first.
        shortfall: dict[int, int] = {}
        if backordering:
            plan, shortfall = stock_plan_backordering(
                demand=demand,
                skus=skus,
                backordering_product_ids=backordering,
                fullest_buckets_first=attempt > 0,
            )
        else:
            plan = stock_plan(demand=demand, skus=skus, fullest_buckets_first=attempt > 0)
        try:
            with transaction.atomic():
                order, order_lines = order_create(
                    customer=customer,
                    email=email,
                    shipping_address=shipping_address,
                    currency=currencies[0],
                    lines=line_data,
                    reservation_expires_at=timezone.now() + settings.ORDER_RESERVATION_TTL,
                    actor=actor,
                    shipping_method=shipping_method,
                    shipping_amount=quote.shipping_amount,
                    shipping_tax_amount=quote.shipping_tax,
                )
                if on_created is not None:
                    on_created(order)
                # Last: the stock rows are the hot ones; hold their locks briefly.
                if plan:
                    stock_reserve(
                        requests=[
                            ReservationRequest(line.pk, line.product_id, line.sku, line.quantity)
                            for line in order_lines
                        ],
                        plan=plan,
                        expires_at=order.reservation_expires_at,
                        actor=actor,
                    )
                # Then what no stock covers queues, within the products' backorder limits
                # (their rows are the hot ones for a backordered product).
                backorder_claims_create(
                    requests=[
                        BackorderRequest(line.pk, line.product_id, shortfall[line.product_id])
                        for line in order_lines
                        if line.product_id in shortfall
                    ],
                    expires_at=order.reservation_expires_at,
                )
                _stock_low_record(order, [products[sku] for sku in quantities], quantities)
            return order
        except ReservationRaceLost:
            logger.info("Checkout lost a stock race; re-planning")
    raise InsufficientStock(sorted(quantities))


def _stock_low_record(order: Order, products: list[Product], quantities: dict[str, int]) -> None:
    """A stock.low event for each product this checkout took from at or above its
    threshold to below it (once per crossing: the stock rows stay locked by this
    transaction). Costs nothing for products without a threshold."""
    watched = [product for product in products if product.low_stock_threshold > 0]
    if not watched:
        return
    available = products_available(product_ids=[product.pk for product in watched])
    for product in watched:
        after = available[product.pk]
        threshold = product.low_stock_threshold
        if after < threshold <= after + quantities[product.sku]:
            order_event_record(
                order=order,
                type="stock.low",
                change={
                    "sku": product.sku,
                    "available": after,
                    "threshold": threshold,
                    "quantity": quantities[product.sku],
                },
            )


def order_checkout(
    *,
    customer: User,
    email: str,
    shipping_address: dict[str, Any],
    lines: Sequence[OrderLineRequest],
    payment_method: str,
    actor: Actor,
    resume_order_id: uuid.UUID | str | None = None,
    on_created: Callable[[Order], None] | None = None,
    shipping_method: str = "standard",
) -> uuid.UUID | str:
    """Place the order and authorize its payment. Return the order's id.

    A retry of a checkout whose payment step failed passes `resume_order_id`: it pays
    for that order instead of placing a second one. Payment errors propagate (the order
    stays, in payment_failed, with its stock held until it expires).
    """
    with checkout_observed() as observation:
        if resume_order_id:
            order_id: uuid.UUID | str = resume_order_id
        else:
            order = _order_place(
                customer=customer,
                email=email,
                shipping_address=shipping_address,
                lines=lines,
                actor=actor,
                on_created=on_created,
                shipping_method=shipping_method,
            )
            order_id = order.pk
            observation.placed(currency=order.currency, total_amount=order.total_amount)
        order_pay(order_id=order_id, payment_method=payment_method, actor=actor)
    return order_id
