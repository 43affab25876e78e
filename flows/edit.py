"""Edit an order before it is routed: change quantities, add or remove lines, change the
shipping address, as one edit priced first (propose) and applied at most once (commit).

Transactions: propose writes only the edit row (the price comes from
pricing.services.order_quote, read outside any transaction). Commit, in one transaction:
lock the order, check it is as it was when priced, release the held units of the lines
that shrink or go and reserve what the new quantities need (one conditional statement,
inventory.services.stock_reserve), rewrite the lines, amounts and address, record the
`order.edited` event. An edit that cannot be reserved rolls back and changes nothing.

Payment: an order without a live authorization (pending_payment, payment_failed) just
has a new total, which its next payment authorizes. A confirmed order may only get
cheaper: the capture at shipment takes min(authorized, order total)
(flows.ship.order_capture_amount); the provider releases the rest. A confirmed order whose
total would rise is refused (OrderEditNeedsReauthorization).
"""

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from core.errors import NotFound
from core.outbox import outbox_publish
from flows.lock_objects import order_lock
from inventory.errors import InsufficientStock, ReservationRaceLost, UnknownSku
from inventory.models import Product
from inventory.services import ReservationRequest, reservations_release, stock_plan, stock_reserve
from orders.audit import order_event_record
from orders.errors import (
    CurrencyMismatch,
    OrderChanged,
    OrderEditInvalid,
    OrderEditNeedsReauthorization,
    OrderNotEditable,
)
from orders.models import Order, OrderEdit, OrderLine
from orders.states import OrderStatus
from payments.models import Payment
from payments.services.operations import LIVE_PAYMENT_STATUSES
from pricing.base import PricedLine, PricingRequest
from pricing.services import order_quote

logger = logging.getLogger(__name__)

EDITABLE_STATUSES = (
    OrderStatus.PENDING_PAYMENT,
    OrderStatus.CONFIRMED,
    OrderStatus.PAYMENT_FAILED,
)
# How often a commit re-plans after concurrent checkouts took its planned units.
RESERVATION_ATTEMPTS = 5


def _base_of(order: Order) -> dict[str, Any]:
    """What an edit is priced against: a commit on an order that differs is refused."""
    return {
        "status": order.status,
        "lines": {line.sku: line.quantity for line in order.lines.all()},
        "shipping_address": order.shipping_address,
        "total_amount": order.total_amount,
    }


def _editable_check(order: Order) -> None:
    if order.status not in EDITABLE_STATUSES:
        raise OrderNotEditable(
            f"Order {order.number} is {order.status}: only pending_payment, confirmed or "
            "payment_failed orders can be edited.",
            current_status=order.status,
        )
    if order.status != OrderStatus.CONFIRMED and (
        Payment.objects.filter(order=order, status__in=LIVE_PAYMENT_STATUSES).exists()
    ):
        raise OrderNotEditable(
            f"Order {order.number} has a payment in flight: edit it once that settles.",
            current_status=order.status,
        )


def order_edit_propose(
    *,
    order_id: uuid.UUID | str,
    lines: Mapping[str, int],
    shipping_address: dict[str, Any] | None,
    actor: Actor,
) -> OrderEdit:
    """Price an edit of the order (`lines`: SKU -> new quantity, 0 removes the line; a
    new address or None). Writes only the edit row; nothing about the order changes."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        raise NotFound("No such order.")
    _editable_check(order)
    current = {line.sku: line for line in order.lines.all()}
    wanted = {sku: line.quantity for sku, line in current.items()}
    wanted.update(lines)
    wanted = {sku: qty for sku, qty in wanted.items() if qty > 0}
    address = shipping_address if shipping_address is not None else order.shipping_address
    if not wanted:
        raise OrderEditInvalid("An edit cannot remove every line: cancel the order instead.")
    # Lines an earlier edit removed stay with quantity 0: they are not part of the order.
    if wanted == {sku: line.quantity for sku, line in current.items() if line.quantity} and (
        address == order.shipping_address
    ):
        raise OrderEditInvalid("The edit changes nothing.")
    added = sorted(set(wanted) - set(current))
    products = {
        product.sku: product for product in Product.objects.filter(sku__in=added, is_active=True)
    }
    unknown = sorted(set(added) - set(products))
    if unknown:
        raise UnknownSku(unknown)
    if any(product.currency != order.currency for product in products.values()):
        raise CurrencyMismatch(f"The order is priced in {order.currency}.")
    unit_prices = {sku: line.unit_price for sku, line in current.items()}
    unit_prices.update({sku: product.price for sku, product in products.items()})
    quote = order_quote(
        PricingRequest(
            lines=[PricedLine(sku, unit_prices[sku], qty) for sku, qty in wanted.items()],
            country=str(address.get("country", "")).upper(),
            currency=order.currency,
            shipping_method=order.shipping_method,
        )
    )
    subtotal = sum(unit_prices[sku] * qty for sku, qty in wanted.items())
    tax = quote.tax_amount
    total = subtotal + quote.shipping_amount + tax
    if order.status != OrderStatus.CONFIRMED or total == order.total_amount:
        action = OrderEdit.PaymentAction.NONE
    elif total < order.total_amount:
        action = OrderEdit.PaymentAction.REDUCE
    else:
        action = OrderEdit.PaymentAction.REAUTHORIZE
    return OrderEdit.objects.create(
        order=order,
        lines=dict(lines),
        shipping_address=shipping_address,
        base=_base_of(order),
        subtotal_amount=subtotal,
        shipping_amount=quote.shipping_amount,
        tax_amount=tax,
        total_amount=total,
        line_taxes=dict(quote.line_taxes),
        payment_action=action,
        created_by=actor.user,
    )


def order_edit_commit(
    *, order_id: uuid.UUID | str, edit_id: uuid.UUID | str, actor: Actor
) -> OrderEdit:
    """Apply a proposed edit, all or nothing. A committed edit is returned as it is (a
    second commit acts no more). Raise OrderChanged when the order is no longer what the
    edit was priced on, InsufficientStock when the new quantities cannot be held (nothing
    changes), OrderEditNeedsReauthorization for a rise on an authorized order."""
    for attempt in range(RESERVATION_ATTEMPTS):
        try:
            with transaction.atomic():
                return _commit(
                    order_id=order_id, edit_id=edit_id, actor=actor, fullest_first=attempt > 0
                )
        except ReservationRaceLost:
            logger.info("Order edit lost a stock race; re-planning")
    edit = OrderEdit.objects.get(pk=edit_id)
    raise InsufficientStock(sorted(edit.lines))


def _commit(
    *, order_id: uuid.UUID | str, edit_id: uuid.UUID | str, actor: Actor, fullest_first: bool
) -> OrderEdit:
    order = order_lock(order_id=order_id)
    edit = OrderEdit.objects.select_for_update().filter(pk=edit_id, order=order).first()
    if edit is None:
        raise NotFound("No such edit.")
    if edit.status == OrderEdit.Status.COMMITTED:
        return edit
    if edit.status != OrderEdit.Status.PROPOSED:
        raise OrderChanged(f"Edit {edit.pk} is {edit.status}: ask for a new preview.")
    _editable_check(order)
    if _base_of(order) != edit.base:
        raise OrderChanged(f"Order {order.number} changed since edit {edit.pk} was priced.")
    if edit.payment_action == OrderEdit.PaymentAction.REAUTHORIZE:
        raise OrderEditNeedsReauthorization(
            f"Edit {edit.pk} raises the authorized total of order {order.number}.",
            authorized=order.total_amount,
            total=edit.total_amount,
        )
    current = {line.sku: line for line in order.lines.all()}
    wanted = {sku: line.quantity for sku, line in current.items()}
    wanted.update(edit.lines)
    products = {
        product.sku: product
        for product in Product.objects.filter(sku__in=set(wanted) - set(current))
    }
    # Lines that shrink or go give all their held units back; they, and lines that
    # grow or are new, then hold what they need, in this one transaction.
    shrinking = [line for sku, line in current.items() if wanted[sku] < line.quantity]
    reservations_release(
        order_line_ids=[line.pk for line in shrinking], actor=actor, reason=f"edit {edit.pk}"
    )
    demand_lines: dict[str, tuple[OrderLine, int]] = {}
    for sku, qty in wanted.items():
        line = current.get(sku)
        if line is None:
            if qty <= 0:
                continue
            product = products[sku]
            line = OrderLine.objects.create(
                order=order,
                product=product,
                sku=sku,
                name=product.name,
                unit_price=product.price,
                quantity=qty,
                line_total=product.price * qty,
                tax_amount=edit.line_taxes[sku],
            )
            demand_lines[sku] = (line, qty)
        else:
            if qty > line.quantity:
                demand_lines[sku] = (line, qty - line.quantity)
            elif 0 < qty < line.quantity:
                demand_lines[sku] = (line, qty)
            # A removed line stays, with quantity 0: its released reservations keep it.
            OrderLine.objects.filter(pk=line.pk).update(
                quantity=qty,
                line_total=line.unit_price * qty,
                tax_amount=edit.line_taxes.get(sku, 0),
            )
    if demand_lines:
        demand = {line.product_id: qty for line, qty in demand_lines.values()}
        skus = {line.product_id: sku for sku, (line, _) in demand_lines.items()}
        plan = stock_plan(demand=demand, skus=skus, fullest_buckets_first=fullest_first)
        stock_reserve(
            requests=[
                ReservationRequest(line.pk, line.product_id, line.sku, qty)
                for line, qty in demand_lines.values()
            ],
            plan=plan,
            expires_at=order.reservation_expires_at,
            actor=actor,
        )
    before = {"total_amount": order.total_amount, "lines": edit.base["lines"]}
    order.subtotal_amount = edit.subtotal_amount
    order.shipping_amount = edit.shipping_amount
    order.tax_amount = edit.tax_amount
    order.total_amount = edit.total_amount
    if edit.shipping_address is not None:
        order.shipping_address = edit.shipping_address
    order.save(
        update_fields=[
            "subtotal_amount",
            "shipping_amount",
            "tax_amount",
            "total_amount",
            "shipping_address",
            "updated_at",
        ]
    )
    edit.status = OrderEdit.Status.COMMITTED
    edit.committed_at = timezone.now()
    edit.save(update_fields=["status", "committed_at", "updated_at"])
    # Any other preview of this order was priced on what it no longer is.
    OrderEdit.objects.filter(order=order, status=OrderEdit.Status.PROPOSED).update(
        status=OrderEdit.Status.SUPERSEDED, updated_at=timezone.now()
    )
    order_event_record(
        order=order,
        type="order.edited",
        change={
            "edit_id": str(edit.pk),
            "before": before,
            "after": {
                "total_amount": edit.total_amount,
                "lines": {sku: qty for sku, qty in wanted.items() if qty > 0},
            },
            "shipping_address_changed": edit.shipping_address is not None,
            "payment_action": edit.payment_action,
        },
    )
    # The customer is told, by a worker, once the edit has committed.
    outbox_publish(
        topic="order.edited",
        payload={"order_id": str(order.pk), "edit_id": str(edit.pk)},
        key=f"order-edited-{edit.pk}",
    )
    return edit
