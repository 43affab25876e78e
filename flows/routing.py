"""Route and re-route a confirmed order to the warehouses that hold its stock.

Sequence: (1) lock the order, open one fulfilment request per warehouse holding part of
it, commit; (2) send each request, outside any transaction (its idempotency key comes
from its row id, so a retried task never asks twice); (3) per answer, lock the order
and record it: accepted makes a shipment, rejected moves that warehouse's units
elsewhere (and asks there) or, when nowhere can fill them, cancels the order through
flows.cancel; (4) once every warehouse holding part of the order accepted, route it
(flows.route).
"""

import logging
import uuid

from django.db import transaction

from core.actors import Actor
from core.errors import DomainError
from flows.cancel import order_cancel
from flows.lock_objects import order_lock
from flows.route import held_lines_by_warehouse, order_route_if_accepted
from fulfilment.errors import WarehousesUnavailable
from fulfilment.gateways import base as warehouse_api
from fulfilment.models import FulfilmentRequest
from fulfilment.services import (
    fulfilment_request_accept_locked,
    fulfilment_request_error_record,
    fulfilment_request_reject_locked,
    fulfilment_requests_open_locked,
    fulfilment_requests_pending,
    warehouse_send,
)
from inventory.errors import InsufficientStock
from inventory.services import reservations_move_off_warehouse
from orders.models import Order
from orders.states import OrderStatus

logger = logging.getLogger(__name__)

# A rejection re-routes; an order cannot bounce between warehouses forever.
MAX_ROUTING_ROUNDS = 5


def _requests_prepare(order_id: uuid.UUID | str) -> tuple[Order, list[FulfilmentRequest]] | None:
    """Lock the order; open a request per warehouse holding part of it. None when the
    order is not to be routed (no longer confirmed)."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        if order.status == OrderStatus.ROUTED:
            # Requests re-opened after a cancel that did not complete: send them again.
            return order, fulfilment_requests_pending(order_id=order.pk)
        if order.status != OrderStatus.CONFIRMED:
            return None
        pending = fulfilment_requests_open_locked(
            order_id=order.pk, lines_by_warehouse=held_lines_by_warehouse(order)
        )
        return order, pending


def _rejection_record(
    request: FulfilmentRequest, rejected: warehouse_api.Rejected, actor: Actor
) -> str:
    """Record a rejection and move that warehouse's units elsewhere. Return why the
    order cannot be fulfilled, or '' when it can (or no longer matters)."""
    with transaction.atomic():
        order = order_lock(order_id=request.order_id)
        if fulfilment_request_reject_locked(request.pk, rejected) is None:
            return ""
        if order.status != OrderStatus.CONFIRMED:
            return ""
        # Not only the warehouses that rejected: one already asked for other lines of the
        # order would never be asked for these (one open request per warehouse).
        already_asked = set(
            FulfilmentRequest.objects.filter(order=order).values_list("warehouse_id", flat=True)
        )
        try:
            with transaction.atomic():
                reservations_move_off_warehouse(
                    order_line_ids=list(order.lines.values_list("pk", flat=True)),
                    warehouse_id=request.warehouse_id,
                    exclude_warehouse_ids=already_asked,
                    actor=actor,
                    reason=f"re-routed: {request.warehouse.code} rejected ({rejected.code})",
                )
        except InsufficientStock:
            return (
                f"no warehouse can fulfil the order ({request.warehouse.code}: "
                f"{rejected.reason or rejected.code})"
            )
    return ""


def order_route(*, order_id: uuid.UUID | str) -> None:
    """Send each warehouse holding part of the confirmed order its fulfilment request.

    Accepted: a Shipment, and the order is routed once all parts are. Rejected: the
    units move to another warehouse (and that one is asked), or the order is
    cancelled. Unreachable: WarehousesUnavailable, so the task retries later with the
    same requests (same idempotency keys). Safe to run again.
    """
    actor = Actor.system()
    for _round in range(MAX_ROUTING_ROUNDS):
        prepared = _requests_prepare(order_id)
        if prepared is None:
            return
        order, pending = prepared
        unreachable: list[str] = []
        rerouted = False
        for request in pending:
            try:
                result = warehouse_send(
                    request, order_number=order.number, shipping_address=order.shipping_address
                )
            except Exception as error:  # unreachable, unknown outcome, breaker open, 4xx
                fulfilment_request_error_record(request, error)
                unreachable.append(f"{request.warehouse.code}: {error}")
                continue
            if isinstance(result, warehouse_api.Accepted):
                with transaction.atomic():
                    order_lock(order_id=order.pk)
                    fulfilment_request_accept_locked(request.pk, result)
                continue
            rerouted = True
            unfulfillable = _rejection_record(request, result, actor)
            if unfulfillable:
                _cancel_unfulfillable(order.pk, unfulfillable, actor)
                return
        if unreachable:
            raise WarehousesUnavailable("; ".join(unreachable))
        if not rerouted:
            break
    order_route_if_accepted(order_id=order_id, actor=actor)


def _cancel_unfulfillable(order_id: uuid.UUID | str, reason: str, actor: Actor) -> None:
    """Nowhere can fill it: cancel (the outbox then voids the payment and tells the
    customer). A warehouse that cannot be asked to withdraw its part yet makes the
    routing task retry."""
    try:
        order_cancel(order_id=order_id, actor=actor, reason=reason)
    except DomainError as error:
        if error.status >= 500:
            raise WarehousesUnavailable(error.detail) from error
        logger.warning("Order %s cannot be fulfilled nor cancelled: %s", order_id, error.detail)
