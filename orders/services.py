"""Order use cases. Each opens the one transaction it needs."""

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django_fsm import ConcurrentTransition, can_proceed

from core.actors import Actor
from core.errors import (
    ConcurrentUpdate,
    DomainError,
    InsufficientStock,
    InvalidTransition,
    NotFound,
    UnknownSku,
)
from inventory.models import Product
from inventory.services import (
    ReservationRaceLost,
    ReservationRequest,
    reservations_commit,
    reservations_release,
    stock_plan,
    stock_reserve,
)
from orders.events import order_status_change_record
from orders.models import Order, OrderLine
from orders.states import TRANSITIONS, OrderStatus

logger = logging.getLogger(__name__)

# How often a checkout re-plans after concurrent checkouts took its planned units.
RESERVATION_ATTEMPTS = 5


class CurrencyMismatch(DomainError):
    code = "currency_mismatch"
    status = 422
    title = "All products in an order must share one currency"


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
) -> Order:
    """Create an order in pending_payment with all its stock reserved, or nothing at all.

    `on_created` runs inside the order's transaction (e.g. to checkpoint an idempotency key).
    """
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
    subtotal = sum(products[sku].price * qty for sku, qty in quantities.items())

    for _attempt in range(RESERVATION_ATTEMPTS):
        plan = stock_plan(demand=demand, skus=skus)
        try:
            with transaction.atomic():
                order = Order.objects.create(
                    customer=customer,
                    email=email,
                    shipping_address=shipping_address,
                    currency=currencies[0],
                    subtotal_amount=subtotal,
                    total_amount=subtotal,
                    reservation_expires_at=timezone.now() + settings.ORDER_RESERVATION_TTL,
                )
                order_lines = OrderLine.objects.bulk_create(
                    OrderLine(
                        order=order,
                        product=products[sku],
                        sku=sku,
                        name=products[sku].name,
                        unit_price=products[sku].price,
                        quantity=qty,
                        line_total=products[sku].price * qty,
                    )
                    for sku, qty in quantities.items()
                )
                order_status_change_record(
                    order=order, from_status="", transition="place", actor=actor
                )
                if on_created is not None:
                    on_created(order)
                # Last: the stock rows are the hot ones; hold their locks briefly.
                stock_reserve(
                    requests=[
                        ReservationRequest(line.pk, line.product_id, line.sku, line.quantity)
                        for line in order_lines
                    ],
                    plan=plan,
                    expires_at=order.reservation_expires_at,
                    actor=actor,
                )
            return order
        except ReservationRaceLost:
            logger.info("Checkout lost a stock race; re-planning")
    raise InsufficientStock(sorted(quantities))


def _release_stock(order: Order, actor: Actor, reason: str) -> None:
    reservations_release(
        order_line_ids=order.lines.values_list("pk", flat=True),
        actor=actor,
        reason=reason or f"order {order.number} {order.status}",
    )


def _commit_stock(order: Order, actor: Actor, reason: str) -> None:
    reservations_commit(
        order_line_ids=order.lines.values_list("pk", flat=True),
        actor=actor,
        reason=reason or f"order {order.number} shipped",
    )


# What a transition does to stock, inside the transition's transaction.
_STOCK_EFFECTS: dict[str, Callable[[Order, Actor, str], None]] = {
    "cancel": _release_stock,
    "expire": _release_stock,
    "ship": _commit_stock,
}


def order_transition(
    *, order_id: uuid.UUID | str, transition: str, actor: Actor, reason: str = ""
) -> Order:
    """Move the order through one named transition, with its stock effect and audit row.

    Raise InvalidTransition when the machine does not allow it from the current status.
    """
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        order_transition_locked(order=order, transition=transition, actor=actor, reason=reason)
    return order


def order_lock(*, order_id: uuid.UUID | str) -> Order:
    """Lock the order row for the rest of the caller's transaction."""
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if order is None:
        raise NotFound("No such order.")
    return order


def order_transition_locked(
    *, order: Order, transition: str, actor: Actor, reason: str = ""
) -> None:
    """Take a transition on an order the caller has locked, inside its transaction."""
    if transition not in TRANSITIONS:
        raise InvalidTransition(transition=transition, current_status=order.status)
    method = getattr(order, transition)
    if not can_proceed(method):
        why = ""
        if can_proceed(method, check_conditions=False):
            # The only guarded transition: retry_payment needs the stock still held.
            why = f"its reservation expired at {order.reservation_expires_at.isoformat()}"
        raise InvalidTransition(transition=transition, current_status=order.status, why=why)
    from_status = order.status
    method()
    try:
        order.save(update_fields=["status", "updated_at"])
    except ConcurrentTransition as error:
        raise ConcurrentUpdate() from error
    effect = _STOCK_EFFECTS.get(transition)
    if effect is not None:
        effect(order, actor, reason)
    order_status_change_record(
        order=order,
        from_status=from_status,
        transition=transition,
        actor=actor,
        reason=reason,
    )


def order_cancel(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Cancel the order and release its stock."""
    return order_transition(order_id=order_id, transition="cancel", actor=actor, reason=reason)


def orders_expire_overdue(*, now: datetime | None = None, actor: Actor | None = None) -> int:
    """Expire unpaid orders whose reservation ran out; release their stock.

    Safe to run again and concurrently: an order already moved on is skipped.
    Return how many orders this run expired.
    """
    now = now or timezone.now()
    actor = actor or Actor.system()
    overdue = list(
        Order.objects.filter(
            status__in=[OrderStatus.PENDING_PAYMENT, OrderStatus.PAYMENT_FAILED],
            reservation_expires_at__lte=now,
        ).values_list("pk", flat=True)
    )
    expired = 0
    for order_id in overdue:
        try:
            order_transition(
                order_id=order_id,
                transition="expire",
                actor=actor,
                reason="reservation expired",
            )
        except (InvalidTransition, ConcurrentUpdate, NotFound):
            continue
        expired += 1
    return expired
