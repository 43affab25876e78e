"""Ship an order: capture its payment per shipped report, exactly once each, then move
its stock out. The only module that takes `ship`.

Capture policy (Stripe multicapture: the authorization is created with
`request_multicapture=if_available`, payments.gateways.stripe):
- Each shipped report a warehouse sends (a whole shipment, or part of one) captures the
  value of the units it says left: units x unit price, plus their share of their line's
  tax (after n of a line's units shipped, floor(tax x n / quantity) of its tax is
  captured, the rule `order_capture_amount` and returns use). The order's shipping and
  its tax go with the first capture.
- Captures go out one at a time, oldest report first; each is its own payment operation
  (reference "shipment-<id>-report-<first line id>", unique per payment while not
  failed), so its idempotency key, derived from the operation's id, is fixed per
  (payment, shipped report). A repeated report records no units, hence no capture.
- The capture of the last report, once nothing is left to ship, is final: it takes all
  the order may still take (`order_capture_amount` less what was captured: never more
  than authorized, nor than the total an edit lowered) and the provider releases the
  rest of the authorization. Every capture is capped the same way.
- When the rest of the order is cancelled after its reports were captured (flows.cancel),
  a final "rest" operation releases what is left: a cancel of the PaymentIntent at the
  provider (its amount 0), or a final capture of any remainder. Staff shipping the order
  (`order_ship`) take all it still owes in one final capture (reference "order" when no
  warehouse reported).
- A card without multicapture (Stripe offers it on Visa, Mastercard, Amex and Discover
  only) refuses the first non-final capture (`payment_intent_invalid_parameter`): that
  operation fails, and the order is then captured once, finally, when nothing is left to
  ship (`_single_capture`), as a one-shipment order is.
- Payment.amount_captured adds up the captures; the payment is `captured` (and the order
  `shipped`, from `partially_shipped` or `routed`) when the final capture is recorded.
  Each capture writes a `payment.captured` event carrying its amount and reference.

Transactions, per capture: (1) lock the order and payment, record (or re-open, same key)
the capture operation, commit; (2) call the provider, outside any transaction; (3) lock
order, payment and operation again and record the outcome; the final capture ships the
order and commits its reservations in that same transaction. Whichever path records a
capture first (this worker, the webhook for a final one, the reconciler) records it; the
others find it done. An order without a payment (paid offline) ships without a provider
call once nothing is left at a warehouse.
"""

import logging
import uuid

from django.db import transaction
from django.db.models import F

from core.actors import Actor
from flows.deliver import order_deliver_if_complete_locked
from flows.lock_objects import LockedOperation, operation_lock, order_lock, order_payment_lock
from flows.route import order_route_locked
from fulfilment.services import ShippedReport, shipments_all_left, shipped_reports
from inventory.selectors import reservations_held_exist
from inventory.services import reservations_commit
from orders.audit import order_event_record
from orders.errors import InvalidTransition
from orders.models import Order
from orders.services import order_transition_locked
from orders.states import OrderStatus
from payments.errors import OperationInProgress
from payments.gateways.base import IntentResult
from payments.models import Payment, PaymentOperation
from payments.services.operations import (
    OPEN_OPERATION_STATUSES,
    operation_create,
    operation_failure_record,
    operation_open_locked,
    operation_resend,
    payment_capture_record,
    payment_event_data,
)
from payments.services.outcomes import Outcome, OutcomeKind, operation_send

logger = logging.getLogger(__name__)

SHIPPABLE_STATUSES = (OrderStatus.CONFIRMED, OrderStatus.ROUTED, OrderStatus.PARTIALLY_SHIPPED)


def order_capture_amount(*, order: Order, authorized: int) -> int:
    """The most the order may have captured by now: all that was authorized (no more
    than its total), less the units that have not shipped while it ships in part (still
    at a warehouse, or cancelled): their unit prices and their lines' tax on them (a
    line's shipped units keep floor(tax x shipped / quantity), the share a return of
    them would refund). Shipping and its tax are kept."""
    # An edit may have lowered the total of an authorized order: capture no more than it.
    authorized = min(authorized, order.total_amount)
    if order.status != OrderStatus.PARTIALLY_SHIPPED:
        return authorized
    unshipped = sum(
        line.unit_price * (line.quantity - line.shipped_quantity)
        + line.tax_amount
        - (line.tax_amount * line.shipped_quantity) // line.quantity
        for line in order.lines.all()
        if line.quantity
    )
    return max(0, min(authorized, authorized - unshipped))


def _ship_locked(*, order: Order, actor: Actor, reason: str) -> None:
    if order.status != OrderStatus.PARTIALLY_SHIPPED:
        # The whole order leaves at once: every unit of every line ships.
        order.lines.update(shipped_quantity=F("quantity"))
    order_transition_locked(order=order, transition="ship", actor=actor, reason=reason)
    reservations_commit(
        order_line_ids=order.lines.values_list("pk", flat=True),
        actor=actor,
        reason=reason or f"order {order.number} shipped",
    )


def order_capture_recorded_locked(
    *, order: Order, actor: Actor, reason: str = "payment captured"
) -> None:
    """A capture was recorded: the order ships (a capture happens only at shipment).

    A capture on an order that no longer ships (cancelled or expired: a capture made at
    the provider behind oms's back) is refunded by the reconciler.
    """
    if order.status == OrderStatus.CONFIRMED:
        order_route_locked(order=order, actor=actor, reason="shipped manually")
    if order.status in (OrderStatus.ROUTED, OrderStatus.PARTIALLY_SHIPPED):
        _ship_locked(order=order, actor=actor, reason=reason)


def _report_values(order: Order, reports: list[ShippedReport]) -> list[int]:
    """What each shipped report is worth: its units at their unit price plus their share
    of their line's tax (a line whose first n units shipped has captured
    floor(tax x n / quantity), so a line shipped in parts captures its tax exactly once),
    and the order's shipping and its tax with the first report."""
    lines = {line.pk: line for line in order.lines.all() if line.quantity}
    shipping = order.total_amount - sum(
        line.unit_price * line.quantity + line.tax_amount for line in lines.values()
    )
    shipped: dict[int, int] = {}
    values = []
    for index, report in enumerate(reports):
        value = max(0, shipping) if index == 0 else 0
        for line_id, units in report.units.items():
            line = lines.get(line_id)
            if line is None:
                continue
            before = shipped.get(line_id, 0)
            after = shipped[line_id] = before + units
            value += (
                line.unit_price * units
                + (line.tax_amount * after) // line.quantity
                - (line.tax_amount * before) // line.quantity
            )
        values.append(value)
    return values


def _nothing_left_to_ship(order: Order) -> bool:
    """No unit of the order is still held at a warehouse: the rest shipped or was
    cancelled."""
    return not reservations_held_exist(order_line_ids=order.lines.values_list("pk", flat=True))


# What the provider answers a non-final capture of a card without multicapture.
MULTICAPTURE_UNAVAILABLE = "payment_intent_invalid_parameter"


def _single_capture(payment: Payment) -> bool:
    """The provider refused a non-final capture of this payment: its card offers no
    multicapture (Stripe: Visa, Mastercard, Amex and Discover only), so the order is
    captured once, in full less what never shipped, when nothing is left to ship."""
    return PaymentOperation.objects.filter(
        payment=payment,
        kind=PaymentOperation.Kind.CAPTURE,
        status=PaymentOperation.Status.FAILED,
        final=False,
        error_code=MULTICAPTURE_UNAVAILABLE,
    ).exists()


def _capture_next_create(order: Order, payment: Payment, *, whole: bool) -> PaymentOperation | None:
    """Record the next capture the order owes, or None when it owes none now.

    Each shipped report not yet captured, oldest first, captures its value, never more
    than the order may still take (`order_capture_amount` less what was captured). The
    last one, once nothing is left to ship, is final and takes all the order may still
    take: the provider releases the rest. When every report is captured and nothing is
    left to ship but the payment is not captured for good (the rest was cancelled), a
    final "rest" capture releases what is left (with an amount of 0: a cancel of the
    rest at the provider). `whole`: staff ship the order as it is, in one final capture of
    all it still owes (under the last report not yet captured, or "order" without one).
    """
    settled = set(
        PaymentOperation.objects.filter(
            payment=payment,
            kind=PaymentOperation.Kind.CAPTURE,
            status=PaymentOperation.Status.SUCCEEDED,
        ).values_list("reference", flat=True)
    )
    ceiling = order_capture_amount(order=order, authorized=payment.amount)
    left = max(0, ceiling - payment.amount_captured)
    nothing_left = whole or _nothing_left_to_ship(order)
    reports = shipped_reports(order_id=order.pk)
    values = _report_values(order, reports)
    due = [
        (report.reference, value)
        for report, value in zip(reports, values, strict=True)
        if report.reference not in settled
    ]
    single = bool(due) and not whole and _single_capture(payment)
    if due and (whole or (nothing_left and single)):
        # Staff ship the order as it is, or a card without multicapture waited for its
        # last unit to leave: one final capture of all it still owes.
        reference, amount, final = due[-1][0], left, True
    elif single:
        return None  # captured once, when nothing is left to ship
    elif due:
        reference, value = due[0]
        final = nothing_left and len(due) == 1
        amount = left if final else min(value, left)
    elif not nothing_left:
        return None
    else:
        reference, amount, final = ("rest" if reports else "order"), left, True
    return operation_create(
        payment, PaymentOperation.Kind.CAPTURE, amount, reference=reference, final=final
    )


def _capture_prepare(
    *, order_id: uuid.UUID | str, whole: bool
) -> tuple[Payment, PaymentOperation] | None:
    """Lock the order and its authorized payment; return the capture to send now: one
    whose outcome is unknown (sent again, same key) or the next one owed. None when
    nothing is owed (or the payment is no longer authorized)."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        payment = order_payment_lock(order=order, statuses=[Payment.Status.AUTHORIZED])
        if payment is None:
            return None  # captured for good (or never authorized): nothing owed
        if order.status not in SHIPPABLE_STATUSES:
            raise InvalidTransition(transition="ship", current_status=order.status)
        operation = operation_open_locked(payment, PaymentOperation.Kind.CAPTURE)
        if operation is not None and operation.status == PaymentOperation.Status.PENDING:
            raise OperationInProgress("A capture for this order is in flight.")
        if operation is not None:
            operation_resend(operation)  # unknown outcome: same key again
        else:
            operation = _capture_next_create(order, payment, whole=whole)
        return None if operation is None else (payment, operation)


def _capture_send(payment: Payment, operation: PaymentOperation) -> Outcome[IntentResult] | None:
    """Make the capture's call: a capture (final or not), or the cancel that releases
    the rest of a payment captured in part. None: nothing to send (a capture of 0 that
    is not final)."""
    intent_id = payment.provider_payment_id or ""
    key = operation.idempotency_key
    if operation.amount == 0 and not operation.final:
        return None
    if operation.amount == 0:
        return operation_send(
            operation, lambda gateway: gateway.cancel(intent_id=intent_id, idempotency_key=key)
        )
    return operation_send(
        operation,
        lambda gateway: gateway.capture(
            intent_id=intent_id, amount=operation.amount, idempotency_key=key, final=operation.final
        ),
    )


def order_capture_record_locked(
    *, locked: LockedOperation, amount_received: int, actor: Actor, reason: str = ""
) -> None:
    """The provider took the locked capture: add it to the payment (once), record the
    event; a final capture ships the order."""
    captured_before = locked.payment.amount_captured
    was_open = locked.operation.status in OPEN_OPERATION_STATUSES
    captured_for_good = payment_capture_record(
        locked.payment, locked.operation, amount_received=amount_received
    )
    if was_open and (captured_for_good or locked.payment.amount_captured > captured_before):
        order_event_record(
            order=locked.order,
            type="payment.captured",
            change={
                **payment_event_data(locked.payment),
                "capture": {
                    "amount": locked.payment.amount_captured - captured_before,
                    "reference": locked.operation.reference,
                    "final": locked.operation.final,
                },
            },
        )
    if captured_for_good:
        order_capture_recorded_locked(
            order=locked.order, actor=actor, reason=reason or "payment captured"
        )


def _capture_outcome_record(
    operation: PaymentOperation,
    outcome: Outcome[IntentResult] | None,
    *,
    actor: Actor,
    reason: str,
) -> None:
    with transaction.atomic():
        locked = operation_lock(operation_id=operation.pk)
        if locked.operation.status == PaymentOperation.Status.SUCCEEDED:
            return  # a webhook or the reconciler recorded it first
        if outcome is None or (
            outcome.kind is OutcomeKind.SUCCEEDED and outcome.result is not None
        ):
            amount_received = outcome.result.amount_received if outcome and outcome.result else 0
            order_capture_record_locked(
                locked=locked, amount_received=amount_received, actor=actor, reason=reason
            )
            return
        failure = operation_failure_record(locked.operation, outcome, action="capture")
        if not locked.operation.final and outcome.error_code == MULTICAPTURE_UNAVAILABLE:
            # No multicapture for this card: the capture waits for the last shipment.
            logger.info(
                "Payment %s offers no multicapture: order %s is captured once, when "
                "nothing is left to ship",
                locked.payment.pk,
                locked.order.number,
            )
            return
    raise failure


def order_captures_take(
    *, order_id: uuid.UUID | str, actor: Actor, reason: str = "", whole: bool = False
) -> None:
    """Capture what the order owes, one capture at a time, oldest shipped report first;
    the final capture ships the order.

    Transactions, per capture: (1) lock the order and payment, record the capture
    operation (or re-open one whose outcome is unknown: same key), commit; (2) call the
    provider outside any transaction; (3) lock order, payment and operation again and
    record the outcome. A capture in flight elsewhere raises OperationInProgress (its
    process goes on with the next ones); a failed call raises, leaving the rest for the
    next attempt. `whole`: staff ship the order as it is (see `_capture_next_create`).
    """
    while True:
        prepared = _capture_prepare(order_id=order_id, whole=whole)
        if prepared is None:
            return
        payment, operation = prepared
        outcome = _capture_send(payment, operation)
        _capture_outcome_record(operation, outcome, actor=actor, reason=reason)


def order_ship(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Ship the order: take the captures it owes first when it has an authorized payment.

    A capture with an unknown outcome is sent again with the same key on the next call.
    A partially shipped order ships only once nothing is left at a warehouse (the rest
    shipped or was cancelled).
    """
    status = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
    if status == OrderStatus.PARTIALLY_SHIPPED and not shipments_all_left(order_id=order_id):
        raise InvalidTransition(
            transition="ship",
            current_status=status,
            why="units are still at a warehouse: they ship, or the rest is cancelled",
        )
    if Payment.objects.filter(
        order_id=order_id, status=Payment.Status.AUTHORIZED, is_current=True
    ).exists():
        order_captures_take(order_id=order_id, actor=actor, reason=reason, whole=True)
        return Order.objects.get(pk=order_id)
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        _ship_locked(order=order, actor=actor, reason=reason)
    return order


def order_ship_when_shipments_left(*, order_id: uuid.UUID | str, actor: Actor) -> None:
    """A warehouse reported units shipped (or the rest was cancelled): capture what each
    shipped report owes; once nothing is left at a warehouse the final capture ships
    the order (without a payment it just ships); count deliveries reported meanwhile.

    A provider that cannot be reached raises, so the outbox task retries.
    """
    shipping = (OrderStatus.ROUTED, OrderStatus.PARTIALLY_SHIPPED)
    if Order.objects.filter(pk=order_id, status__in=shipping).exists():
        if Payment.objects.filter(
            order_id=order_id, status=Payment.Status.AUTHORIZED, is_current=True
        ).exists():
            order_captures_take(order_id=order_id, actor=actor, reason="warehouse shipped")
        elif shipments_all_left(order_id=order_id):
            order_ship(order_id=order_id, actor=actor, reason="warehouse shipped")
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        order_deliver_if_complete_locked(order=order, actor=actor)
