"""Route confirmed orders to warehouses and apply what the warehouses report back."""

import logging
import uuid
from collections import defaultdict

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from core.breakers import circuit_breaker
from core.errors import DomainError, InsufficientStock, NotFound
from core.outbox import outbox_publish
from fulfilment.gateways import base as warehouse_api
from fulfilment.gateways.http import HttpWarehouseGateway
from fulfilment.models import FulfilmentRequest, Shipment
from inventory.models import Reservation, Warehouse
from inventory.services import reservations_move_off_warehouse
from orders.models import Order
from orders.services import order_lock, order_transition_locked
from orders.states import OrderStatus

logger = logging.getLogger(__name__)

# A rejection re-routes; an order cannot bounce between warehouses forever.
MAX_ROUTING_ROUNDS = 5


class WarehousesUnavailable(Exception):
    """Some warehouse could not be reached: the routing task retries with backoff."""


class UnknownShipment(DomainError):
    code = "unknown_shipment"
    status = 404
    title = "No such shipment for this warehouse"


def _warehouse_breaker_call(
    warehouse: Warehouse, request: FulfilmentRequest
) -> warehouse_api.FulfilmentResult:
    breaker = circuit_breaker(
        f"warehouse-{warehouse.code}",
        fail_max=settings.WAREHOUSE_BREAKER_FAIL_MAX,
        reset_timeout=settings.WAREHOUSE_BREAKER_RESET_SECONDS,
        exclude=[warehouse_api.WarehouseRequestRejected],
    )
    gateway = HttpWarehouseGateway(
        settings.FULFILMENT_CONNECT_TIMEOUT_SECONDS, settings.FULFILMENT_READ_TIMEOUT_SECONDS
    )
    order = request.order
    message = warehouse_api.FulfilmentRequest(
        request_id=str(request.pk),
        order_number=order.number,
        warehouse_code=warehouse.code,
        lines=[
            warehouse_api.FulfilmentLine(line["sku"], line["name"], line["quantity"])
            for line in request.lines
        ],
        shipping_address={k: str(v) for k, v in order.shipping_address.items()},
        callback_url=settings.FULFILMENT_CALLBACK_BASE_URL.rstrip("/")
        + "/api/v1/fulfilment/callbacks/",
    )
    result: warehouse_api.FulfilmentResult = breaker.call(
        gateway.send,
        warehouse.fulfilment_url,
        warehouse.fulfilment_secret,
        message,
        request.idempotency_key,
    )
    return result


def _requests_prepare(order_id: uuid.UUID | str) -> list[FulfilmentRequest] | None:
    """Lock the order; make a pending request for each warehouse holding part of it.

    Return the requests still to send, or None when the order is not to be routed
    (no longer confirmed). Warehouses without a fulfilment URL are operated by hand.
    """
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        if order.status != OrderStatus.CONFIRMED:
            return None
        held = (
            Reservation.objects.filter(order_line__order=order, status=Reservation.Status.HELD)
            .select_related("stock_item__warehouse", "order_line")
            .order_by("stock_item__warehouse_id", "order_line_id")
        )
        lines_by_warehouse: dict[int, list[dict[str, object]]] = defaultdict(list)
        warehouses: dict[int, Warehouse] = {}
        for reservation in held:
            warehouse = reservation.stock_item.warehouse
            warehouses[warehouse.pk] = warehouse
            lines_by_warehouse[warehouse.pk].append(
                {
                    "sku": reservation.order_line.sku,
                    "name": reservation.order_line.name,
                    "quantity": reservation.quantity,
                }
            )
        for warehouse_id, lines in lines_by_warehouse.items():
            if not warehouses[warehouse_id].fulfilment_url:
                continue
            if not FulfilmentRequest.objects.filter(
                order=order,
                warehouse_id=warehouse_id,
                status__in=[FulfilmentRequest.Status.PENDING, FulfilmentRequest.Status.ACCEPTED],
            ).exists():
                FulfilmentRequest.objects.create(
                    order=order, warehouse_id=warehouse_id, lines=lines
                )
        return list(
            FulfilmentRequest.objects.filter(
                order=order, status=FulfilmentRequest.Status.PENDING
            ).select_related("warehouse", "order")
        )


def _request_accept(request: FulfilmentRequest, accepted: warehouse_api.Accepted) -> None:
    with transaction.atomic():
        order_lock(order_id=request.order_id)
        updated = FulfilmentRequest.objects.filter(
            pk=request.pk, status=FulfilmentRequest.Status.PENDING
        ).update(status=FulfilmentRequest.Status.ACCEPTED, last_error="")
        if updated:
            Shipment.objects.create(
                order_id=request.order_id,
                warehouse_id=request.warehouse_id,
                fulfilment_request=request,
                reference=accepted.shipment_reference,
            )


def _request_reject(
    request: FulfilmentRequest, rejected: warehouse_api.Rejected, actor: Actor
) -> None:
    """Record the rejection; move that warehouse's units elsewhere or cancel the order."""
    with transaction.atomic():
        order = order_lock(order_id=request.order_id)
        updated = FulfilmentRequest.objects.filter(
            pk=request.pk, status=FulfilmentRequest.Status.PENDING
        ).update(
            status=FulfilmentRequest.Status.REJECTED,
            reject_code=rejected.code[:64],
            reject_reason=rejected.reason[:500],
        )
        if not updated or order.status != OrderStatus.CONFIRMED:
            return
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
            # Nowhere else can fill it: cancel. The outbox then voids the payment and
            # tells the customer.
            order_transition_locked(
                order=order,
                transition="cancel",
                actor=actor,
                reason=f"no warehouse can fulfil the order ({request.warehouse.code}: "
                f"{rejected.reason or rejected.code})",
            )


def _route_if_complete(order_id: uuid.UUID | str, actor: Actor) -> None:
    """Route the order once every warehouse holding part of it has accepted."""
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        if order.status != OrderStatus.CONFIRMED:
            return
        holding = set(
            Reservation.objects.filter(
                order_line__order=order, status=Reservation.Status.HELD
            ).values_list("stock_item__warehouse_id", flat=True)
        )
        accepted = set(
            FulfilmentRequest.objects.filter(
                order=order, status=FulfilmentRequest.Status.ACCEPTED
            ).values_list("warehouse_id", flat=True)
        )
        if holding and holding <= accepted:
            order_transition_locked(
                order=order, transition="route", actor=actor, reason="warehouses accepted"
            )


def order_route(*, order_id: uuid.UUID | str) -> None:
    """Send each warehouse holding part of the confirmed order its fulfilment request.

    Accepted: a Shipment, and the order is routed once all parts are. Rejected: the
    units move to another warehouse (and that one is asked), or the order is
    cancelled. Unreachable: WarehousesUnavailable, so the task retries later with the
    same requests (same idempotency keys). Safe to run again.
    """
    actor = Actor.system()
    for _round in range(MAX_ROUTING_ROUNDS):
        pending = _requests_prepare(order_id)
        if pending is None:
            return
        unreachable: list[str] = []
        rerouted = False
        for request in pending:
            FulfilmentRequest.objects.filter(pk=request.pk).update(attempts=request.attempts + 1)
            try:
                result = _warehouse_breaker_call(request.warehouse, request)
            except Exception as error:  # unreachable, unknown outcome, breaker open, 4xx
                FulfilmentRequest.objects.filter(pk=request.pk).update(
                    last_error=f"{type(error).__name__}: {error}"[:500]
                )
                unreachable.append(f"{request.warehouse.code}: {error}")
                continue
            if isinstance(result, warehouse_api.Accepted):
                _request_accept(request, result)
            else:
                _request_reject(request, result, actor)
                rerouted = True
        if unreachable:
            raise WarehousesUnavailable("; ".join(unreachable))
        if not rerouted:
            break
    _route_if_complete(order_id, actor)


def shipment_callback_apply(
    *, warehouse: Warehouse, event: str, reference: str, carrier: str, tracking_number: str
) -> Shipment:
    """Apply a warehouse's shipped / delivered report. Repeated reports change nothing."""
    actor = Actor.system()
    shipment = Shipment.objects.filter(warehouse=warehouse, reference=reference).first()
    if shipment is None:
        raise UnknownShipment(f"Warehouse {warehouse.code} has no shipment '{reference}'.")
    with transaction.atomic():
        order: Order = order_lock(order_id=shipment.order_id)
        shipment = Shipment.objects.select_for_update().get(pk=shipment.pk)
        now = timezone.now()
        if shipment.status == Shipment.Status.ACCEPTED:
            shipment.status = Shipment.Status.SHIPPED
            shipment.carrier = carrier[:64]
            shipment.tracking_number = tracking_number[:128]
            shipment.shipped_at = now
            shipment.save(
                update_fields=["status", "carrier", "tracking_number", "shipped_at", "updated_at"]
            )
            # Capturing the payment talks to the provider: a worker does it.
            outbox_publish(
                topic="shipment.shipped",
                payload={"order_id": str(order.pk), "shipment_id": shipment.pk},
                key=f"shipment-shipped-{shipment.pk}",
            )
        if event == "delivered" and shipment.status == Shipment.Status.SHIPPED:
            shipment.status = Shipment.Status.DELIVERED
            shipment.delivered_at = now
            shipment.save(update_fields=["status", "delivered_at", "updated_at"])
            undelivered = order.shipments.exclude(status=Shipment.Status.DELIVERED).exists()
            if not undelivered and order.status == OrderStatus.SHIPPED:
                order_transition_locked(
                    order=order, transition="deliver", actor=actor, reason="warehouse delivered"
                )
    return shipment


def warehouse_get_by_code(code: str) -> Warehouse:
    warehouse = Warehouse.objects.filter(code=code).first()
    if warehouse is None or not warehouse.fulfilment_secret:
        raise NotFound("Unknown warehouse.")
    return warehouse
