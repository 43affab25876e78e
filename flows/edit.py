"""Edit an order before it is routed: change quantities, add or remove lines, change the
shipping address, as one edit priced first (propose) and applied at most once (commit).

Transactions: propose writes only the edit row (the price comes from
pricing.services.order_quote, read outside any transaction). Commit, in one transaction:
lock the order, check it is as it was when priced, release the held units of the lines
that shrink or go and reserve what the new quantities need (one conditional statement,
inventory.services.stock_reserve), rewrite the lines, amounts and address, record the
`order.edited` event. An edit that cannot be reserved rolls back and changes nothing.

Payment: an order without a live authorization (pending_payment, payment_failed) just
has a new total, which its next payment authorizes. A confirmed order that gets cheaper
keeps its authorization: the capture at shipment takes min(authorized, order total)
(flows.ship.order_capture_amount); the provider releases the rest. A confirmed order
whose total rises is re-authorized (`reauthorize`), in this order:

1. One transaction: lock the order and the edit; find the edit's payment (one per edit,
   Payment.order_edit) or create it, not yet the order's (`is_current` false), with its
   authorize operation for the new total, on the payment method of the order's payment
   (or the one the commit names). Commit. An operation in flight is refused (409
   payment_operation_in_progress); one whose outcome is unknown is sent again.
2. Outside any transaction: authorize at the provider with a key derived from the edit
   id (`oms-order-edit-<id>-authorize`), so a retried or concurrent commit, or a resend
   after a lost answer, never makes a second authorization.
3. One transaction: lock the order and the edit again and record the outcome. Authorized:
   re-check the edit's base, reserve the extra stock, apply the edit, make the new payment
   the order's and the old one not, and write a `payment.unused` outbox message for the
   old one. Anything else (declined, 3-D Secure asked, stock gone, the order changed):
   the edit fails and the order, its lines and its stock stay as they were; a new
   authorization that exists gets a `payment.unused` message too. Unknown: nothing
   changes, the edit stays proposed, 503; a retry resends the same key.
4. After commit: void what step 3 marked (flows.void.payment_void_unused); the outbox
   message retries it until voided, and its void operation (one per payment) keeps it
   to one cancel at the provider.

Authorizing before touching the order means a decline changes nothing; the price of it
is the compensating void when the edit then cannot apply. A crash between steps 2 and 3
leaves the operation pending: the reconciler reads the intent back (by its payment id
in the metadata), and a commit after that finishes the edit; an authorization whose
edit nobody commits within ORDER_EDIT_AUTHORIZATION_HOLD is released
(order_edit_authorizations_release). An order confirmed without a payment at the
provider needs the commit to name a `payment_method` (else 409
order_edit_needs_reauthorization).
"""

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from core.errors import DomainError, NotFound
from core.outbox import outbox_publish
from flows.lock_objects import order_lock, order_payment_lock
from flows.payment_outcomes import payment_intent_apply_locked
from flows.void import payment_void_unused
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
from payments.errors import (
    OperationInProgress,
    PaymentDeclined,
    PaymentProviderUnavailable,
    PaymentRejected,
)
from payments.gateways.base import IntentResult
from payments.models import Payment, PaymentOperation
from payments.provider import retry_after_seconds
from payments.services.operations import (
    LIVE_PAYMENT_STATUSES,
    OPEN_OPERATION_STATUSES,
    VOIDABLE_STATUSES,
    operation_mark_unknown,
    operation_open_locked,
    operation_resend,
    operation_settle,
    payment_create,
    payment_fail,
    payment_replace,
)
from payments.services.outcomes import Outcome, OutcomeKind, operation_send
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
        Payment.objects.filter(
            order=order, status__in=LIVE_PAYMENT_STATUSES, is_current=True
        ).exists()
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
    *,
    order_id: uuid.UUID | str,
    edit_id: uuid.UUID | str,
    actor: Actor,
    payment_method: str = "",
) -> OrderEdit:
    """Apply a proposed edit, all or nothing. A committed edit is returned as it is (a
    second commit acts no more). Raise OrderChanged when the order is no longer what the
    edit was priced on, InsufficientStock when the new quantities cannot be held (nothing
    changes). An edit that raises an authorized total re-authorizes first (see the
    module's docstring; `payment_method` overrides the order's payment's): PaymentDeclined,
    PaymentRejected or PaymentProviderUnavailable when it cannot, nothing changed."""
    edit = OrderEdit.objects.filter(pk=edit_id, order_id=order_id).first()
    if edit is None:
        raise NotFound("No such edit.")
    if edit.payment_action == OrderEdit.PaymentAction.REAUTHORIZE:
        return _reauthorizing_commit(
            order_id=order_id, edit_id=edit.pk, actor=actor, payment_method=payment_method
        )
    for attempt in range(RESERVATION_ATTEMPTS):
        try:
            with transaction.atomic():
                return _commit(
                    order_id=order_id, edit_id=edit_id, actor=actor, fullest_first=attempt > 0
                )
        except ReservationRaceLost:
            logger.info("Order edit lost a stock race; re-planning")
    raise InsufficientStock(sorted(edit.lines))


def _edit_lock(order: Order, edit_id: uuid.UUID | str) -> OrderEdit:
    """Lock the locked order's edit."""
    edit = OrderEdit.objects.select_for_update().filter(pk=edit_id, order=order).first()
    if edit is None:
        raise NotFound("No such edit.")
    return edit


def _base_check(order: Order, edit: OrderEdit) -> None:
    """The order is editable and still what the proposed edit was priced on."""
    if edit.status != OrderEdit.Status.PROPOSED:
        raise OrderChanged(f"Edit {edit.pk} is {edit.status}: ask for a new preview.")
    _editable_check(order)
    if _base_of(order) != edit.base:
        raise OrderChanged(f"Order {order.number} changed since edit {edit.pk} was priced.")


def _commit(
    *, order_id: uuid.UUID | str, edit_id: uuid.UUID | str, actor: Actor, fullest_first: bool
) -> OrderEdit:
    order = order_lock(order_id=order_id)
    edit = _edit_lock(order, edit_id)
    if edit.status == OrderEdit.Status.COMMITTED:
        return edit
    _base_check(order, edit)
    _edit_apply_locked(order=order, edit=edit, actor=actor, fullest_first=fullest_first)
    return edit


def _edit_apply_locked(
    *,
    order: Order,
    edit: OrderEdit,
    actor: Actor,
    fullest_first: bool,
    payment_change: dict[str, Any] | None = None,
) -> None:
    """Reserve, rewrite the lines, amounts and address, mark the edit committed, record
    `order.edited` (with `payment_change`, if any) and the customer's email."""
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
    # Any other preview of this order was priced on what it no longer is; an
    # authorization one of them took is released.
    superseded = OrderEdit.objects.filter(order=order, status=OrderEdit.Status.PROPOSED)
    taken = list(
        Payment.objects.filter(order_edit__in=superseded, status__in=VOIDABLE_STATUSES)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    superseded.update(status=OrderEdit.Status.SUPERSEDED, updated_at=timezone.now())
    for payment_id in taken:
        _payment_unused_publish(order=order, payment_id=payment_id)
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
            **({"payment": payment_change} if payment_change else {}),
        },
    )
    # The customer is told, by a worker, once the edit has committed.
    outbox_publish(
        topic="order.edited",
        payload={"order_id": str(order.pk), "edit_id": str(edit.pk)},
        key=f"order-edited-{edit.pk}",
    )


# Re-authorization (payment_action `reauthorize`): see the module's docstring.


def reauthorization_idempotency_key(edit_id: uuid.UUID | str) -> str:
    """The provider key of an edit's one authorization, whoever sends it and how often."""
    return f"oms-order-edit-{edit_id}-authorize"


def _payment_unused_publish(*, order: Order, payment_id: int) -> None:
    """The payment is no longer the order's, or never will be: void it after commit."""
    outbox_publish(
        topic="payment.unused",
        payload={"order_id": str(order.pk), "payment_id": payment_id},
        key=f"payment-unused-{payment_id}",
    )


def _edit_fail_locked(edit: OrderEdit) -> None:
    edit.status = OrderEdit.Status.FAILED
    edit.save(update_fields=["status", "updated_at"])


@dataclass
class _Recorded:
    """What step 3 decided: the committed edit, or the error to raise once its
    transaction committed; and the authorizations to void after that."""

    result: OrderEdit | DomainError
    void_payment_ids: list[int] = field(default_factory=list)


def _reauthorizing_commit(
    *, order_id: uuid.UUID | str, edit_id: uuid.UUID, actor: Actor, payment_method: str
) -> OrderEdit:
    prepared = _reauthorization_prepare(
        order_id=order_id, edit_id=edit_id, payment_method=payment_method
    )
    if isinstance(prepared, OrderEdit):
        return prepared
    payment, operation = prepared
    outcome: Outcome[IntentResult] | None = None
    if operation is not None:
        order = payment.order
        outcome = operation_send(
            operation,
            lambda gateway: gateway.authorize(
                amount=payment.amount,
                currency=payment.currency.lower(),
                payment_method=payment.payment_method,
                idempotency_key=reauthorization_idempotency_key(edit_id),
                metadata={
                    "order_id": str(order.pk),
                    "order_number": order.number,
                    "payment_id": str(payment.pk),
                    "order_edit_id": str(edit_id),
                },
            ),
        )
    recorded = _reauthorization_record(
        order_id=order_id,
        edit_id=edit_id,
        payment_id=payment.pk,
        operation_id=operation.pk if operation is not None else None,
        outcome=outcome,
        actor=actor,
    )
    for payment_id in recorded.void_payment_ids:
        # Best effort now; the outbox message written with the decision retries it.
        try:
            payment_void_unused(payment_id=payment_id, actor=actor)
        except Exception:
            logger.warning("Void of unused authorization %s left to the outbox", payment_id)
    if isinstance(recorded.result, DomainError):
        raise recorded.result
    return recorded.result


def _reauthorization_prepare(
    *, order_id: uuid.UUID | str, edit_id: uuid.UUID, payment_method: str
) -> OrderEdit | tuple[Payment, PaymentOperation | None]:
    """Step 1: the edit's payment and the authorize operation to send (None: nothing to
    send, its outcome is recorded), or the edit when it is committed already."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        edit = _edit_lock(order, edit_id)
        if edit.status == OrderEdit.Status.COMMITTED:
            return edit
        if edit.status != OrderEdit.Status.PROPOSED:
            raise OrderChanged(f"Edit {edit.pk} is {edit.status}: ask for a new preview.")
        payment = Payment.objects.select_for_update().filter(order_edit=edit).first()
        if payment is None:
            _base_check(order, edit)
            current = order_payment_lock(order=order, statuses=[Payment.Status.AUTHORIZED])
            method = payment_method or (current.payment_method if current is not None else "")
            if not method:
                raise OrderEditNeedsReauthorization(
                    f"Edit {edit.pk} raises the total of order {order.number}, which has no "
                    "authorization at the provider: commit it with a payment_method.",
                    authorized=order.total_amount,
                    total=edit.total_amount,
                )
            return payment_create(
                order_id=order.pk,
                payment_method=method,
                amount=edit.total_amount,
                currency=order.currency,
                order_edit_id=edit.pk,
            )
        if payment.status != Payment.Status.PENDING:
            return payment, None
        operation = operation_open_locked(payment, PaymentOperation.Kind.AUTHORIZE)
        if operation is None or operation.status == PaymentOperation.Status.PENDING:
            # In flight (another commit of this edit), or its process died: the
            # reconciler reads it back after its grace period.
            raise OperationInProgress(f"The re-authorization for edit {edit.pk} is in flight.")
        operation_resend(operation)  # unknown outcome: the same key again
        return payment, operation


def _reauthorization_record(
    *,
    order_id: uuid.UUID | str,
    edit_id: uuid.UUID,
    payment_id: int,
    operation_id: int | None,
    outcome: Outcome[IntentResult] | None,
    actor: Actor,
) -> _Recorded:
    """Step 3, re-planned when a concurrent checkout took the planned units."""
    for attempt in range(RESERVATION_ATTEMPTS):
        try:
            with transaction.atomic():
                return _reauthorization_record_once(
                    order_id=order_id,
                    edit_id=edit_id,
                    payment_id=payment_id,
                    operation_id=operation_id,
                    outcome=outcome,
                    actor=actor,
                    fullest_first=attempt > 0,
                    last_attempt=attempt == RESERVATION_ATTEMPTS - 1,
                )
        except ReservationRaceLost:
            logger.info("Order edit lost a stock race; re-planning")
    raise AssertionError("the last attempt reports a lost race as insufficient stock")


def _outcome_record_locked(
    *,
    order: Order,
    payment: Payment,
    operation_id: int | None,
    outcome: Outcome[IntentResult] | None,
    actor: Actor,
) -> DomainError | None:
    """Record the provider's answer on the locked payment (unless a webhook or the
    reconciler did first). Return the error for an outcome still unknown."""
    if operation_id is None or outcome is None:
        return None
    operation = PaymentOperation.objects.select_for_update().get(pk=operation_id)
    if operation.status not in OPEN_OPERATION_STATUSES:
        return None
    if outcome.kind is OutcomeKind.SUCCEEDED and outcome.result is not None:
        payment_intent_apply_locked(
            order=order, payment=payment, intent=outcome.result, actor=actor
        )
        return None
    if outcome.kind in (OutcomeKind.DECLINED, OutcomeKind.REJECTED):
        operation_settle(
            operation,
            PaymentOperation.Status.FAILED,
            error_code=outcome.error_code,
            message=outcome.message,
        )
        payment_fail(
            payment,
            decline_code=outcome.error_code if outcome.kind is OutcomeKind.DECLINED else "",
        )
        return None
    # Unknown, or not sent (breaker open): the edit stays proposed and a retry sends the
    # same key, which cannot authorize twice.
    operation_mark_unknown(operation, outcome)
    return PaymentProviderUnavailable(retry_after=retry_after_seconds(), order_id=str(order.pk))


def _reauthorization_record_once(
    *,
    order_id: uuid.UUID | str,
    edit_id: uuid.UUID,
    payment_id: int,
    operation_id: int | None,
    outcome: Outcome[IntentResult] | None,
    actor: Actor,
    fullest_first: bool,
    last_attempt: bool,
) -> _Recorded:
    order = order_lock(order_id=order_id)
    edit = _edit_lock(order, edit_id)
    payment = Payment.objects.select_for_update().get(pk=payment_id)
    unknown = _outcome_record_locked(
        order=order, payment=payment, operation_id=operation_id, outcome=outcome, actor=actor
    )
    if unknown is not None:
        return _Recorded(unknown)
    if edit.status == OrderEdit.Status.COMMITTED:
        return _Recorded(edit)
    if payment.status == Payment.Status.PENDING:
        return _Recorded(
            OperationInProgress(f"The re-authorization for edit {edit.pk} is in flight.")
        )
    error: DomainError
    if payment.status == Payment.Status.AUTHORIZED:
        try:
            with transaction.atomic():
                _base_check(order, edit)
                current = order_payment_lock(order=order, statuses=[Payment.Status.AUTHORIZED])
                _edit_apply_locked(
                    order=order,
                    edit=edit,
                    actor=actor,
                    fullest_first=fullest_first,
                    payment_change={
                        "payment_id": payment.pk,
                        "amount": payment.amount,
                        "replaced_payment_id": current.pk if current is not None else None,
                    },
                )
                payment_replace(old=current, new=payment)
        except ReservationRaceLost:
            if not last_attempt:
                raise
            error = InsufficientStock(sorted(edit.lines))
        except (InsufficientStock, UnknownSku, OrderChanged, OrderNotEditable) as refused:
            error = refused
        else:
            if current is None:
                return _Recorded(edit)
            _payment_unused_publish(order=order, payment_id=current.pk)
            return _Recorded(edit, void_payment_ids=[current.pk])
    elif payment.status == Payment.Status.REQUIRES_ACTION:
        error = PaymentDeclined(
            decline_code="authentication_required",
            message=(
                "The card asks the customer to authenticate (3-D Secure), which an order "
                "edit cannot do: the new authorization is released and nothing changed."
            ),
            order_id=str(order.pk),
            order_number=order.number,
        )
    elif payment.status == Payment.Status.FAILED:
        if outcome is not None and outcome.kind is OutcomeKind.REJECTED:
            error = PaymentRejected(
                f"The provider refused the re-authorization for edit {edit.pk}: "
                f"{outcome.message or outcome.error_code}",
                order_id=str(order.pk),
            )
        else:
            error = PaymentDeclined(
                decline_code=payment.decline_code or "payment_failed",
                message=(
                    f"The re-authorization for edit {edit.pk} was declined: nothing changed; "
                    "propose the edit again to pay with another method."
                ),
                order_id=str(order.pk),
                order_number=order.number,
            )
    else:
        error = OrderChanged(
            f"The re-authorization for edit {edit.pk} was released: ask for a new preview."
        )
    if edit.status == OrderEdit.Status.PROPOSED:
        _edit_fail_locked(edit)
    # The savepoint rolled back only order and stock rows: the payment is as recorded.
    if payment.status in VOIDABLE_STATUSES:
        _payment_unused_publish(order=order, payment_id=payment.pk)
        return _Recorded(error, void_payment_ids=[payment.pk])
    return _Recorded(error)


def order_edit_authorizations_release(*, held_before: datetime, actor: Actor) -> int:
    """Release the authorizations of edits nobody committed since (a commit that died
    after the provider answered, never retried): the edit fails, the authorization is
    voided. Return how many. The reconciler calls this."""
    abandoned = list(
        Payment.objects.filter(
            is_current=False,
            order_edit__status=OrderEdit.Status.PROPOSED,
            status__in=VOIDABLE_STATUSES,
            updated_at__lt=held_before,
        )
        .order_by("pk")
        .values_list("pk", "order_id", "order_edit_id")
    )
    released = 0
    for payment_id, order_id, edit_id in abandoned:
        with transaction.atomic():
            order = order_lock(order_id=order_id)
            edit = _edit_lock(order, edit_id)
            if edit.status != OrderEdit.Status.PROPOSED:
                continue
            _edit_fail_locked(edit)
            _payment_unused_publish(order=order, payment_id=payment_id)
        if payment_void_unused(payment_id=payment_id, actor=actor):
            released += 1
    return released
