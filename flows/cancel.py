"""Cancel an order before it ships. The only module that takes `cancel`.

Sequence: (1) lock the order and check it can be cancelled: not while a capture is in
flight (the capture decides: once it succeeds the order has shipped); (2) ask every
warehouse holding a fulfilment request for it to withdraw, outside any transaction;
a warehouse that already shipped refuses (409 order_at_warehouse; refused at once when
a shipment was already reported shipped) and one that cannot be reached makes the
cancel fail for now (503 warehouse_unavailable): the order stays as it was, and the
warehouses that withdrew in the meantime are asked again (new requests, through the
outbox and the routing worker); (3) lock the order again, cancel it and release its stock in one
transaction; (4) void its authorization right away (flows.void), best effort: the
outbox message written with the cancel (flows.handlers) retries until it is voided.

Cancel the rest (`order_cancel_rest`, staff): a partially shipped order keeps what left
and gives up what has not. Each warehouse whose shipment still holds units is asked to
withdraw them, outside any transaction, one after the other: one that withdraws has its
rest recorded (its shipment closes) and the order's units held there released, in one
transaction with the order locked; one that refuses has shipped (its shipped report
follows and is applied as usual), so a unit is either withdrawn or shipped, never both;
one that cannot be reached makes the call fail for now (503 warehouse_unavailable, what
was withdrawn stays withdrawn; call again). Once nothing is left at a warehouse the
order ships (flows.ship): the shipped reports not captured yet are captured, the last
one final, or, when all were, a final "rest" operation releases the rest of the
authorization at the provider, once. What is captured is the value of what shipped.
"""

import contextlib
import logging
import uuid

from django.db import transaction
from django_fsm import can_proceed

from core.actors import Actor
from core.errors import ConcurrentUpdate
from core.outbox import outbox_publish
from flows.lock_objects import order_lock
from flows.ship import order_ship_when_shipments_left
from flows.void import order_payments_void
from fulfilment.errors import OrderAtWarehouse, WarehouseUnreachable
from fulfilment.gateways import base as warehouse_api
from fulfilment.models import FulfilmentRequest
from fulfilment.services import (
    fulfilment_request_error_record,
    fulfilment_request_withdrawn_locked,
    fulfilment_requests_reopen_locked,
    fulfilment_requests_to_withdraw,
    fulfilment_requests_with_rest,
    shipments_shipped_exist,
    warehouse_withdraw,
)
from inventory.services import reservations_release
from orders.audit import order_event_record
from orders.errors import InvalidTransition
from orders.models import Order
from orders.services import order_transition_locked
from orders.states import OrderStatus
from payments.errors import OperationInProgress
from payments.models import PaymentOperation
from payments.services.operations import OPEN_OPERATION_STATUSES

logger = logging.getLogger(__name__)

# A routing task can open a new request while the cancel withdraws the others.
WITHDRAW_ROUNDS = 3
RETRY_AFTER_SECONDS = 30


def _cancel_check_locked(order: Order) -> None:
    if not can_proceed(order.cancel):
        raise InvalidTransition(transition="cancel", current_status=order.status)
    capture_in_flight = PaymentOperation.objects.filter(
        payment__order=order,
        kind=PaymentOperation.Kind.CAPTURE,
        status__in=OPEN_OPERATION_STATUSES,
    ).exists()
    if shipments_shipped_exist(order_id=order.pk):
        raise OrderAtWarehouse(
            f"A warehouse has already shipped part of order {order.number}; it can no "
            "longer be cancelled."
        )
    if capture_in_flight:
        raise OperationInProgress(
            "The payment for this order is being captured: it is shipping and can no "
            "longer be cancelled. Retry to see the outcome."
        )


def _withdraw(request: FulfilmentRequest, order: Order, reason: str) -> None:
    """Ask the warehouse not to ship the request; record its confirmation."""
    try:
        result = warehouse_withdraw(request, order_number=order.number, reason=reason)
    except Exception as error:  # unreachable, unknown outcome, breaker open, refused
        fulfilment_request_error_record(request, error)
        logger.warning("Withdraw of fulfilment request %s failed: %s", request.pk, error)
        raise WarehouseUnreachable(
            f"Warehouse {request.warehouse.code} could not be asked to withdraw the order; "
            "nothing was cancelled.",
            retry_after=RETRY_AFTER_SECONDS,
        ) from error
    if isinstance(result, warehouse_api.WithdrawRefused):
        raise OrderAtWarehouse(
            f"Warehouse {request.warehouse.code} has already shipped its part of order "
            f"{order.number} ({result.code}); it can no longer be cancelled.",
            warehouse=request.warehouse.code,
        )
    with transaction.atomic():
        order_lock(order_id=order.pk)
        fulfilment_request_withdrawn_locked(request.pk)


def _reopen(order: Order, withdrawn: list[int]) -> None:
    """A cancel that does not complete leaves the order as it was: warehouses that
    already withdrew their part are asked again (new requests, sent by the routing
    worker through the outbox)."""
    if not withdrawn:
        return
    with transaction.atomic():
        order_lock(order_id=order.pk)
        reopened = fulfilment_requests_reopen_locked(withdrawn)
        if reopened:
            outbox_publish(
                topic="fulfilment.requests_reopened",
                payload={"order_id": str(order.pk), "request_ids": [r.pk for r in reopened]},
                key=f"fulfilment-requests-reopened-{reopened[0].pk}",
            )


def order_cancel_locked(*, order: Order, actor: Actor, reason: str) -> None:
    """Cancel an order no warehouse holds, and release its stock."""
    order_transition_locked(order=order, transition="cancel", actor=actor, reason=reason)
    reservations_release(
        order_line_ids=order.lines.values_list("pk", flat=True),
        actor=actor,
        reason=reason or f"order {order.number} cancelled",
    )


def order_cancel(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Cancel the order: warehouses withdraw first, then its stock is released, then
    its authorization is voided."""
    for _round in range(WITHDRAW_ROUNDS):
        with transaction.atomic():
            order = order_lock(order_id=order_id)
            _cancel_check_locked(order)
            to_withdraw = fulfilment_requests_to_withdraw(order_id=order.pk)
            if not to_withdraw:
                order_cancel_locked(order=order, actor=actor, reason=reason)
                break
        withdrawn: list[int] = []
        try:
            for request in to_withdraw:
                _withdraw(request, order, reason)
                withdrawn.append(request.pk)
        except (OrderAtWarehouse, WarehouseUnreachable):
            _reopen(order, withdrawn)
            raise
    else:
        raise ConcurrentUpdate("The order was routed again while being cancelled; retry.")
    order_payments_void(order_id=order.pk, actor=actor)
    return order


def _withdraw_rest(request: FulfilmentRequest, order: Order, actor: Actor, reason: str) -> bool:
    """Ask the warehouse not to ship what is left of the request. Return whether it
    withdrew it (False: it has shipped; its shipped report is applied as usual)."""
    try:
        result = warehouse_withdraw(request, order_number=order.number, reason=reason)
    except Exception as error:  # unreachable, unknown outcome, breaker open
        fulfilment_request_error_record(request, error)
        logger.warning("Withdraw of the rest of request %s failed: %s", request.pk, error)
        raise WarehouseUnreachable(
            f"Warehouse {request.warehouse.code} could not be asked to withdraw the rest of "
            "the order; what it holds is unchanged.",
            retry_after=RETRY_AFTER_SECONDS,
        ) from error
    if isinstance(result, warehouse_api.WithdrawRefused):
        return False
    with transaction.atomic():
        locked = order_lock(order_id=order.pk)
        fulfilment_request_withdrawn_locked(request.pk)
        released = reservations_release(
            order_line_ids=locked.lines.values_list("pk", flat=True),
            warehouse_id=request.warehouse_id,
            actor=actor,
            reason=reason or f"rest of order {order.number} cancelled",
        )
        units: dict[str, int] = {}
        names: dict[str, str] = {}
        for reservation in released:
            sku = reservation.order_line.sku
            units[sku] = units.get(sku, 0) + reservation.quantity
            names[sku] = reservation.order_line.name
        lines = [{"sku": sku, "quantity": q} for sku, q in sorted(units.items())]
        order_event_record(
            order=locked,
            type="order.rest_cancelled",
            change={"warehouse": request.warehouse.code, "reason": reason, "lines": lines},
        )
        if lines:
            outbox_publish(
                topic="order.rest_cancelled",
                payload={
                    "order_id": str(order.pk),
                    "request_id": request.pk,
                    "lines": [{**line, "name": names[str(line["sku"])]} for line in lines],
                },
                key=f"order-rest-cancelled-{request.pk}",
            )
    return True


def order_cancel_rest(*, order_id: uuid.UUID | str, actor: Actor, reason: str = "") -> Order:
    """Cancel what has not shipped of a partially shipped order: warehouses withdraw
    their rest, its stock is released, and the order ships with what left (capturing
    only its value)."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        if order.status != OrderStatus.PARTIALLY_SHIPPED:
            raise InvalidTransition(
                transition="cancel_rest",
                current_status=order.status,
                why="only a partially shipped order has a rest to cancel",
            )
    for request in fulfilment_requests_with_rest(order_id=order.pk):
        _withdraw_rest(request, order, actor, reason)
    # Finish the order when nothing is left at a warehouse, also when no warehouse had
    # a rest to withdraw (a second cancel-rest after one that stopped half-way). A
    # shipped report's worker capturing already ships the order itself.
    with contextlib.suppress(OperationInProgress):
        order_ship_when_shipments_left(order_id=order.pk, actor=actor)
    order.refresh_from_db()
    return order
