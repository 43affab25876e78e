"""Place an order: reserve its stock, and (at checkout with a payment method) pay for it.

Transactions: one for the order, its lines, the audit row and the reservation (the
conditional stock update last: the stock rows are the hot ones). A product that allows
backorders and is short gives what it has, and the rest becomes a backorder claim in
the same transaction, its product's counter raised by a conditional update within its
limit (inventory.backorders); a paid order with claims awaits stock (flows.backorders).
With a payment method, the payment then runs as flows.pay does: its own transactions
around, never across, the provider call.

The API's checkout with local pricing first tries `order_place_written` (with a payment
method: `order_checkout_written`): the same domain decisions on two reads (products with
their stock rows, then the rates), and every write, the Idempotency-Key's included, in
one statement (flows.checkout_sql); a paid checkout's statement also writes the payment
and its pending authorize operation, the provider call's checkpoint, then pays from
there (flows.pay `order_pay_checkpointed`). What it does not cover (backorders,
low-stock thresholds, a handler of the order.pending_payment topic) and every error go
through `order_place` (`order_checkout`).
"""

import dataclasses
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

from core.actors import Actor
from core.errors import DomainError
from core.idempotency import CompletedKey, KeyTaken, StatementClaim
from core.outbox import outbox_dispatch_on_commit, outbox_has_work
from flows.checkout_sql import (
    CheckoutProduct,
    PaidCheckoutWritten,
    checkout_paid_write,
    checkout_rows_read,
    checkout_write,
)
from flows.metrics import CheckoutObservation, checkout_observed
from flows.pay import CheckoutResponse, CheckpointedPayment, order_pay, order_pay_checkpointed
from inventory.backorders import BackorderRequest, backorder_claims_create
from inventory.errors import InsufficientStock, ReservationRaceLost, UnknownSku
from inventory.models import Product, Reservation, StockMovement
from inventory.selectors import products_available
from inventory.services import (
    ReservationRequest,
    stock_plan,
    stock_plan_backordering,
    stock_plan_from_rows,
    stock_reserve,
)
from orders.audit import order_event_messages, order_event_record, order_event_row
from orders.errors import CurrencyMismatch
from orders.models import Order, order_number_generate
from orders.selectors import OrderLineRow, OrderRow, PaymentRow
from orders.services import OrderLineData, order_amounts, order_create
from orders.states import OrderStatus
from payments.models import Payment, PaymentOperation
from pricing.base import PricedLine, PricingRequest, Quote
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
    quote = _quote(
        prices={sku: product.price for sku, product in products.items()},
        quantities=quantities,
        shipping_address=shipping_address,
        currency=currencies[0],
        shipping_method=shipping_method,
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


def order_place_written(
    *,
    customer: User,
    email: str,
    shipping_address: dict[str, Any],
    lines: Sequence[OrderLineRequest],
    actor: Actor,
    key: CompletedKey,
    render: Callable[[OrderRow], dict[str, Any]],
    shipping_method: str = "standard",
) -> dict[str, Any] | None:
    """Place the order as `order_place` does, its writes and its Idempotency-Key (completed
    with the response `render` makes of the order) in one statement: return the
    response's body.

    Return None, having written nothing, for a checkout this path leaves to
    `order_place` (see `_written_covers`) or that ends in an error (unknown SKU,
    currency mismatch, no shipping, insufficient stock, the stock lost to concurrent
    checkouts RESERVATION_ATTEMPTS times): run through `order_place` under the key as
    always, it reports the error and stores the outcome. Raise KeyTaken when the key
    exists (then the key replays, as core.idempotency does). Only a checkout that ends
    here is observed here (flows.metrics); one passed on is observed where it ends.
    """
    with checkout_observed() as observation:
        written = _written_observed(
            observation,
            lambda: _order_place_written(
                customer=customer,
                email=email,
                shipping_address=shipping_address,
                lines=lines,
                actor=actor,
                key=key,
                render=render,
                shipping_method=shipping_method,
            ),
        )
        if written is None:
            return None
    assert written.body is not None  # noqa: S101 - rendered before the write for a CompletedKey
    return written.body


def order_checkout_written(
    *,
    customer: User,
    email: str,
    shipping_address: dict[str, Any],
    lines: Sequence[OrderLineRequest],
    payment_method: str,
    actor: Actor,
    claim: StatementClaim,
    render: Callable[[OrderRow], dict[str, Any]],
    shipping_method: str = "standard",
) -> dict[str, Any] | None:
    """`order_checkout` for the checkouts `order_place_written` covers: one statement
    claims the Idempotency-Key (checkpointed with the order's id) and writes the order,
    as `order_place_written` does, with its payment and pending authorize operation (the
    checkpoint of the provider call, committed before the call). Then the provider is
    called and the outcome recorded as `order_pay` records it (flows.pay
    `order_pay_checkpointed`). Return the body `render` makes of the order as written
    and recorded (nothing read back).

    Return None, having written nothing, where `order_place_written` does; raise KeyTaken
    when the key exists. Once the statement committed, payment errors propagate as
    `order_checkout`'s do (the order stays, payment_failed, its stock held).
    """
    with checkout_observed() as observation:
        written = _written_observed(
            observation,
            lambda: _order_place_written(
                customer=customer,
                email=email,
                shipping_address=shipping_address,
                lines=lines,
                actor=actor,
                key=claim,
                render=render,
                shipping_method=shipping_method,
                payment_method=payment_method,
            ),
            paid=True,
        )
        if written is None or written.payment is None:
            return None
        order_row = written.order
        now = written.now

        def render_paid(order: Order, payment: Payment) -> dict[str, Any]:
            return render(_order_row_paid(order_row, order, payment, created_at=now))

        order, payment, body = order_pay_checkpointed(
            checkpoint=CheckpointedPayment(
                order_id=order_row.pk,
                order_number=order_row.number,
                payment_id=written.payment.payment_id,
                operation_id=written.payment.operation_id,
                payment_method=payment_method,
                amount=order_row.total_amount,
                currency=order_row.currency,
            ),
            actor=actor,
            response=CheckoutResponse(claim=claim, render=render_paid),
        )
    return body if body is not None else render_paid(order, payment)


def _written_observed(
    observation: CheckoutObservation, write: Callable[[], "_Written | None"], *, paid: bool = False
) -> "_Written | None":
    """Run the single statement's `write` for an observed checkout: the written checkout
    (a paid one with its payment) is placed here; one it leaves to the general path
    (None, a domain error, or the key taken: re-raised) is passed on and None returned."""
    try:
        written = write()
    except KeyTaken:
        observation.pass_on()
        raise
    except DomainError:
        written = None
    if written is None or (paid and written.payment is None):
        observation.pass_on()
        return None
    observation.placed(currency=written.order.currency, total_amount=written.order.total_amount)
    return written


def _order_row_paid(
    order_row: OrderRow, order: Order, payment: Payment, *, created_at: datetime
) -> OrderRow:
    """The order as its statement wrote it, with the status and payment the outcome
    recorded."""
    return dataclasses.replace(
        order_row,
        status=order.status,
        updated_at=order.updated_at,
        payments=[
            PaymentRow(
                pk=payment.pk,
                status=payment.status,
                amount=payment.amount,
                amount_captured=payment.amount_captured,
                amount_refunded=payment.amount_refunded,
                currency=payment.currency,
                decline_code=payment.decline_code,
                client_secret=payment.client_secret,
                created_at=created_at,
            )
        ],
    )


def _written_covers(products: list[CheckoutProduct]) -> bool:
    """Whether the single statement covers this checkout: it writes no backorder claim,
    no stock.low event, and no outbox message of the new status (whose payload names the
    audit row's id); the general path writes those. (The order.created event's messages,
    for webhook subscribers, it writes.)"""
    return all(
        p.backorder_limit == 0 and p.low_stock_threshold == 0 for p in products
    ) and not outbox_has_work(f"order.{OrderStatus.PENDING_PAYMENT}")


_CREATED_EVENT = "order.created"


@dataclass(frozen=True)
class _Written:
    """What the single statement wrote: the order as rendered, the response body (a
    completed key's), the payment's and operation's ids (a paid checkout's), and the
    time it stamped on them."""

    order: OrderRow
    body: dict[str, Any] | None
    payment: PaidCheckoutWritten | None
    now: datetime


def _order_place_written(
    *,
    customer: User,
    email: str,
    shipping_address: dict[str, Any],
    lines: Sequence[OrderLineRequest],
    actor: Actor,
    key: CompletedKey | StatementClaim,
    render: Callable[[OrderRow], dict[str, Any]],
    shipping_method: str,
    payment_method: str = "",
) -> _Written | None:
    quantities = {line.sku: line.quantity for line in lines}
    products, stock_rows = checkout_rows_read(list(quantities))
    if set(products) != set(quantities):
        return None
    if not _written_covers(list(products.values())):
        return None
    currencies = {product.currency for product in products.values()}
    if len(currencies) != 1:
        return None
    currency = currencies.pop()
    demand = {products[sku].pk: qty for sku, qty in quantities.items()}
    skus = {product.pk: sku for sku, product in products.items()}
    quote = _quote(
        prices={sku: product.price for sku, product in products.items()},
        quantities=quantities,
        shipping_address=shipping_address,
        currency=currency,
        shipping_method=shipping_method,
    )
    plan, _shortfall = stock_plan_from_rows(demand=demand, skus=skus, rows=stock_rows)

    now = timezone.now()
    expires_at = now + settings.ORDER_RESERVATION_TTL
    line_rows = [
        OrderLineRow(
            sku=sku,
            name=products[sku].name,
            quantity=qty,
            unit_price=products[sku].price,
            line_total=products[sku].price * qty,
            tax_amount=quote.line_taxes[sku],
        )
        for sku, qty in quantities.items()
    ]
    subtotal, tax, total = order_amounts(
        line_totals=[line.line_total for line in line_rows],
        line_taxes=[line.tax_amount for line in line_rows],
        shipping_amount=quote.shipping_amount,
        shipping_tax_amount=quote.shipping_tax,
    )
    order = OrderRow(
        pk=uuid.uuid4(),
        number=order_number_generate(),
        status=OrderStatus.PENDING_PAYMENT.value,
        subtotal_amount=subtotal,
        shipping_amount=quote.shipping_amount,
        tax_amount=tax,
        total_amount=total,
        currency=currency,
        email=email,
        shipping_method=shipping_method,
        shipping_address=shipping_address,
        reservation_expires_at=expires_at,
        created_at=now,
        updated_at=now,
        lines=line_rows,
        payments=[],
    )
    if isinstance(key, StatementClaim):
        # Paid: the body is rendered once the payment's outcome is recorded.
        body = None
        key_row = key.row(resource_id=str(order.pk), now=now)
    else:
        body = render(order)
        key_row = key.row(body=body, now=now)
    stamp, expires = now.isoformat(), expires_at.isoformat()
    event = order_event_row(order=order, type=_CREATED_EVENT, change=_PLACED_CHANGE)
    user_id = actor.user.pk if actor.user is not None else None
    checkout: dict[str, Any] = {
        "key": key_row,
        "order": {
            "id": str(order.pk),
            "number": order.number,
            "customer_id": customer.pk,
            "email": email,
            "shipping_address": shipping_address,
            "currency": currency,
            "subtotal_amount": order.subtotal_amount,
            "shipping_amount": order.shipping_amount,
            "tax_amount": order.tax_amount,
            "total_amount": order.total_amount,
            "shipping_method": shipping_method,
            "status": order.status,
            "reservation_expires_at": expires,
            "created_at": stamp,
            "updated_at": stamp,
        },
        "lines": [
            {
                "product_id": products[line.sku].pk,
                "sku": line.sku,
                "name": line.name,
                "unit_price": line.unit_price,
                "quantity": line.quantity,
                "tax_amount": line.tax_amount,
            }
            for line in line_rows
        ],
        "status_change": {
            **_PLACED_CHANGE,
            "actor_id": user_id,
            "actor_label": actor.label,
            "request_id": actor.request_id,
            "created_at": stamp,
        },
        "event": event,
        "outbox": order_event_messages(event=event, order_id=order.pk),
        "stock": {
            "now": stamp,
            "expires_at": expires,
            "held": Reservation.Status.HELD.value,
            "kind": StockMovement.Kind.RESERVE.value,
            "actor_id": user_id,
            "request_id": actor.request_id,
            "plan": [],
        },
    }
    if payment_method:
        checkout["payment"] = {
            "provider": Payment._meta.get_field("provider").default,
            "payment_method": payment_method,
            "amount": order.total_amount,
            "currency": currency,
            "status": Payment.Status.PENDING.value,
            "operation_kind": PaymentOperation.Kind.AUTHORIZE.value,
            "operation_status": PaymentOperation.Status.PENDING.value,
            # Counted here, as payments.services.outcomes.operation_send counts an
            # attempt before its call.
            "attempts": 1,
        }
    paid: PaidCheckoutWritten | None = None
    for attempt in range(RESERVATION_ATTEMPTS):
        if attempt > 0:
            # A re-plan after a lost race takes a hot product's fullest buckets first.
            plan = stock_plan(demand=demand, skus=skus, fullest_buckets_first=True)
        checkout["stock"]["plan"] = [
            {
                "stock_item_id": allocation.stock_item_id,
                "product_id": allocation.product_id,
                "quantity": allocation.quantity,
            }
            for allocation in plan
        ]
        try:
            if payment_method:
                paid = checkout_paid_write(checkout)
                outbox_ids = paid.outbox_ids
            else:
                outbox_ids = checkout_write(checkout)
        except ReservationRaceLost:
            logger.info("Checkout lost a stock race; re-planning")
            continue
        if isinstance(key, StatementClaim):
            key.claimed(resource_id=str(order.pk), now=now)
        outbox_dispatch_on_commit(outbox_ids)
        return _Written(order=order, body=body, payment=paid, now=now)
    return None


# The change of an order's first audit row and event, as order_create records it.
_PLACED_CHANGE = {
    "from_status": "",
    "to_status": OrderStatus.PENDING_PAYMENT.value,
    "transition": "place",
    "reason": "",
}


def _quote(
    *,
    prices: dict[str, int],
    quantities: dict[str, int],
    shipping_address: dict[str, Any],
    currency: str,
    shipping_method: str,
) -> Quote:
    """Shipping and tax for the checkout's lines, from the pricing provider."""
    return order_quote(
        PricingRequest(
            lines=[PricedLine(sku, prices[sku], qty) for sku, qty in quantities.items()],
            country=str(shipping_address.get("country", "")).upper(),
            currency=currency,
            shipping_method=shipping_method,
        )
    )


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
