"""Fulfilment records and warehouse calls. Nothing here knows what an order is: the
order use cases (flows.route, flows.cancel, flows.warehouse_reports) decide what a
warehouse's answer means for the order.

Functions ending in `_locked` run inside the caller's transaction with the order row
locked (flows.lock_objects); warehouse calls run outside any transaction.
"""

import uuid
from dataclasses import dataclass, field
from typing import Any

import pybreaker
from django.conf import settings
from django.utils import timezone

from core.breakers import circuit_breaker
from core.errors import NotFound
from core.metrics import breaker_source
from fulfilment.errors import ShipmentLinesInvalid
from fulfilment.gateways import base as warehouse_api
from fulfilment.gateways.http import HttpWarehouseGateway
from fulfilment.metrics import WAREHOUSE_CALLS
from fulfilment.models import FulfilmentRequest, Shipment, ShipmentLine
from inventory.models import Warehouse

CALLBACK_PATH = "/api/v1/fulfilment/callbacks/"


def warehouse_breaker(warehouse: Warehouse) -> pybreaker.CircuitBreaker:
    return circuit_breaker(
        f"warehouse-{warehouse.code}",
        fail_max=settings.WAREHOUSE_BREAKER_FAIL_MAX,
        reset_timeout=settings.WAREHOUSE_BREAKER_RESET_SECONDS,
        exclude=[warehouse_api.WarehouseRequestRejected],
    )


@breaker_source
def warehouse_breakers() -> None:
    """Make the breaker of every warehouse oms calls, so /metrics reports its state."""
    for warehouse in Warehouse.objects.exclude(fulfilment_url="").only("code"):
        warehouse_breaker(warehouse)


# A warehouse's answer or error -> the outcome label of oms_warehouse_calls.
_CALL_OUTCOMES: list[tuple[type[Any], str]] = [
    (warehouse_api.Accepted, "accepted"),
    (warehouse_api.Rejected, "rejected"),
    (warehouse_api.Withdrawn, "withdrawn"),
    (warehouse_api.WithdrawRefused, "refused"),
    (warehouse_api.WarehouseUnavailable, "unavailable"),
    (warehouse_api.WarehouseOutcomeUnknown, "unknown"),
    (warehouse_api.WarehouseRequestRejected, "request_rejected"),
    (pybreaker.CircuitBreakerError, "circuit_open"),
]


def _call_outcome(answer: object) -> str:
    for kind, outcome in _CALL_OUTCOMES:
        if isinstance(answer, kind):
            return outcome
    return "error"


def _breaker_call(warehouse: Warehouse, operation: str, call: Any, *args: Any) -> Any:
    try:
        answer = warehouse_breaker(warehouse).call(call, *args)
    except Exception as error:
        WAREHOUSE_CALLS.labels(operation=operation, outcome=_call_outcome(error)).inc()
        raise
    WAREHOUSE_CALLS.labels(operation=operation, outcome=_call_outcome(answer)).inc()
    return answer


def _gateway() -> HttpWarehouseGateway:
    return HttpWarehouseGateway(
        settings.FULFILMENT_CONNECT_TIMEOUT_SECONDS, settings.FULFILMENT_READ_TIMEOUT_SECONDS
    )


def warehouse_send(
    request: FulfilmentRequest, *, order_number: str, shipping_address: dict[str, Any]
) -> warehouse_api.FulfilmentResult:
    """Ask the request's warehouse to fulfil it (same idempotency key on every attempt).
    Raise the gateway's typed errors, or the breaker's when it is open."""
    warehouse = request.warehouse
    FulfilmentRequest.objects.filter(pk=request.pk).update(attempts=request.attempts + 1)
    message = warehouse_api.FulfilmentRequest(
        request_id=str(request.pk),
        order_number=order_number,
        warehouse_code=warehouse.code,
        lines=[
            warehouse_api.FulfilmentLine(line["sku"], line["name"], line["quantity"])
            for line in request.lines
        ],
        shipping_address={k: str(v) for k, v in shipping_address.items()},
        callback_url=settings.FULFILMENT_CALLBACK_BASE_URL.rstrip("/") + CALLBACK_PATH,
    )
    result: warehouse_api.FulfilmentResult = _breaker_call(
        warehouse,
        "send",
        _gateway().send,
        warehouse.fulfilment_url,
        warehouse.fulfilment_secret,
        message,
        request.idempotency_key,
    )
    return result


def warehouse_withdraw(
    request: FulfilmentRequest, *, order_number: str, reason: str
) -> warehouse_api.WithdrawResult:
    """Ask the request's warehouse not to ship it. Raise the gateway's typed errors."""
    warehouse = request.warehouse
    result: warehouse_api.WithdrawResult = _breaker_call(
        warehouse,
        "withdraw",
        _gateway().withdraw,
        warehouse.fulfilment_url,
        warehouse.fulfilment_secret,
        str(request.pk),
        order_number,
        reason,
        request.withdraw_idempotency_key,
    )
    return result


def fulfilment_request_error_record(request: FulfilmentRequest, error: BaseException) -> None:
    FulfilmentRequest.objects.filter(pk=request.pk).update(
        last_error=f"{type(error).__name__}: {error}"[:500]
    )


def fulfilment_requests_open_locked(
    *, order_id: uuid.UUID | str, lines_by_warehouse: dict[int, list[dict[str, Any]]]
) -> list[FulfilmentRequest]:
    """Make a pending request for each warehouse (with a fulfilment URL) that has none
    open; return the pending ones, still to send."""
    open_statuses = [FulfilmentRequest.Status.PENDING, FulfilmentRequest.Status.ACCEPTED]
    has_open = set(
        FulfilmentRequest.objects.filter(order_id=order_id, status__in=open_statuses).values_list(
            "warehouse_id", flat=True
        )
    )
    automated = set(
        Warehouse.objects.filter(pk__in=list(lines_by_warehouse))
        .exclude(fulfilment_url="")
        .values_list("pk", flat=True)
    )
    for warehouse_id, lines in lines_by_warehouse.items():
        if warehouse_id in automated and warehouse_id not in has_open:
            FulfilmentRequest.objects.create(
                order_id=order_id, warehouse_id=warehouse_id, lines=lines
            )
    return fulfilment_requests_pending(order_id=order_id)


def fulfilment_requests_pending(*, order_id: uuid.UUID | str) -> list[FulfilmentRequest]:
    return list(
        FulfilmentRequest.objects.filter(
            order_id=order_id, status=FulfilmentRequest.Status.PENDING
        ).select_related("warehouse")
    )


def fulfilment_request_accept_locked(
    request_id: int, accepted: warehouse_api.Accepted
) -> Shipment | None:
    """Record the warehouse's acceptance and its shipment; None when already settled."""
    request = FulfilmentRequest.objects.select_for_update().get(pk=request_id)
    if request.status != FulfilmentRequest.Status.PENDING:
        return None
    request.accept()
    request.last_error = ""
    request.save(update_fields=["status", "last_error", "updated_at"])
    return Shipment.objects.create(
        order_id=request.order_id,
        warehouse_id=request.warehouse_id,
        fulfilment_request=request,
        reference=accepted.shipment_reference,
    )


def fulfilment_request_reject_locked(
    request_id: int, rejected: warehouse_api.Rejected
) -> FulfilmentRequest | None:
    """Record the warehouse's rejection; None when the request was settled before."""
    request = FulfilmentRequest.objects.select_for_update().get(pk=request_id)
    if request.status != FulfilmentRequest.Status.PENDING:
        return None
    request.reject()
    request.reject_code = rejected.code[:64]
    request.reject_reason = rejected.reason[:500]
    request.save(update_fields=["status", "reject_code", "reject_reason", "updated_at"])
    return request


def fulfilment_requests_to_withdraw(*, order_id: uuid.UUID | str) -> list[FulfilmentRequest]:
    """The order's requests a warehouse may still act on."""
    return list(
        FulfilmentRequest.objects.filter(
            order_id=order_id,
            status__in=[FulfilmentRequest.Status.PENDING, FulfilmentRequest.Status.ACCEPTED],
        )
        .select_related("warehouse")
        .order_by("pk")
    )


def fulfilment_request_withdrawn_locked(request_id: int) -> None:
    """The warehouse confirmed it will not ship: withdraw the request and its shipment."""
    request = FulfilmentRequest.objects.select_for_update().get(pk=request_id)
    if request.status in (FulfilmentRequest.Status.PENDING, FulfilmentRequest.Status.ACCEPTED):
        request.withdraw()
        request.save(update_fields=["status", "updated_at"])
    shipment = Shipment.objects.select_for_update().filter(fulfilment_request=request).first()
    if shipment is not None and shipment.status == Shipment.Status.ACCEPTED:
        shipment.withdraw()
        shipment.save(update_fields=["status", "updated_at"])
    elif shipment is not None and shipment.status == Shipment.Status.PARTIALLY_SHIPPED:
        shipment.close()  # the rest is withdrawn: what left is all of it
        shipment.save(update_fields=["status", "updated_at"])


def fulfilment_requests_with_rest(*, order_id: uuid.UUID | str) -> list[FulfilmentRequest]:
    """The order's accepted requests whose shipment has lines still to ship."""
    return list(
        FulfilmentRequest.objects.filter(
            order_id=order_id,
            status=FulfilmentRequest.Status.ACCEPTED,
            shipment__status__in=[Shipment.Status.ACCEPTED, Shipment.Status.PARTIALLY_SHIPPED],
        )
        .select_related("warehouse")
        .order_by("pk")
    )


def shipment_unshipped(shipment: Shipment) -> dict[str, int]:
    """Units per SKU of the shipment's request that have not left yet."""
    rest: dict[str, int] = {}
    # A SKU held in several stock rows (buckets) is listed once per row: add them up.
    for line in shipment.fulfilment_request.lines:
        rest[line["sku"]] = rest.get(line["sku"], 0) + int(line["quantity"])
    for sku, quantity in ShipmentLine.objects.filter(shipment=shipment).values_list(
        "sku", "quantity"
    ):
        rest[sku] = rest.get(sku, 0) - quantity
    return {sku: quantity for sku, quantity in rest.items() if quantity > 0}


def shipment_lines_record_locked(
    shipment: Shipment,
    *,
    event_id: str,
    lines: dict[str, int] | None,
    order_line_ids: dict[str, int],
) -> dict[str, int]:
    """Record the units a shipped report says left (None: every unit still to ship).

    Return the units recorded per SKU: none for a report recorded before (same
    event_id) or when nothing is left. Raise ShipmentLinesInvalid for a SKU the request
    does not hold or more units than are still to ship.
    """
    if event_id and ShipmentLine.objects.filter(shipment=shipment, event_id=event_id).exists():
        return {}
    rest = shipment_unshipped(shipment)
    if lines is None:
        shipping = rest
    else:
        over = sorted(sku for sku, quantity in lines.items() if quantity > rest.get(sku, 0))
        if over:
            raise ShipmentLinesInvalid(
                f"More units than are still to ship, or SKUs not in the request: {over}.",
                skus=over,
            )
        shipping = {sku: quantity for sku, quantity in lines.items() if quantity > 0}
    ShipmentLine.objects.bulk_create(
        ShipmentLine(
            shipment=shipment,
            order_line_id=order_line_ids[sku],
            sku=sku,
            quantity=quantity,
            event_id=event_id or f"report-{uuid.uuid4().hex}",
        )
        for sku, quantity in shipping.items()
    )
    return shipping


@dataclass(frozen=True)
class ShippedReport:
    """The units one shipped report said left: one parcel, captured on its own."""

    reference: str  # "shipment-<shipment id>-report-<its first shipment line id>"
    units: dict[int, int] = field(default_factory=dict)  # order line id -> units


def shipped_reports(*, order_id: uuid.UUID | str) -> list[ShippedReport]:
    """Every shipped report of the order's shipments that recorded units, oldest first."""
    reports: dict[tuple[int, str], ShippedReport] = {}
    rows = (
        ShipmentLine.objects.filter(shipment__order_id=order_id)
        .order_by("pk")
        .values_list("pk", "shipment_id", "event_id", "order_line_id", "quantity")
    )
    for pk, shipment_id, event_id, order_line_id, quantity in rows:
        report = reports.get((shipment_id, event_id))
        if report is None:
            report = ShippedReport(reference=f"shipment-{shipment_id}-report-{pk}")
            reports[(shipment_id, event_id)] = report
        report.units[order_line_id] = report.units.get(order_line_id, 0) + quantity
    return list(reports.values())


def shipment_ship_part_locked(shipment: Shipment, *, carrier: str, tracking_number: str) -> bool:
    """Record that some lines of the shipment left. Return whether it changed."""
    if shipment.status not in (Shipment.Status.ACCEPTED, Shipment.Status.PARTIALLY_SHIPPED):
        return False
    shipment.ship_part()
    shipment.carrier = carrier[:64]
    shipment.tracking_number = tracking_number[:128]
    shipment.shipped_at = shipment.shipped_at or timezone.now()
    shipment.save(
        update_fields=["status", "carrier", "tracking_number", "shipped_at", "updated_at"]
    )
    return True


def fulfilment_requests_reopen_locked(request_ids: list[int]) -> list[FulfilmentRequest]:
    """Ask again, under new ids, warehouses that withdrew requests of an order whose
    cancel did not complete: the order goes on as it was. Return the new requests."""
    withdrawn = FulfilmentRequest.objects.filter(
        pk__in=request_ids, status=FulfilmentRequest.Status.WITHDRAWN
    ).order_by("pk")
    return [
        FulfilmentRequest.objects.create(
            order_id=request.order_id, warehouse_id=request.warehouse_id, lines=request.lines
        )
        for request in withdrawn
    ]


def shipments_shipped_exist(*, order_id: uuid.UUID | str) -> bool:
    """Some shipment of the order was reported shipped (in part or all, or delivered)."""
    return Shipment.objects.filter(
        order_id=order_id,
        status__in=[
            Shipment.Status.PARTIALLY_SHIPPED,
            Shipment.Status.SHIPPED,
            Shipment.Status.DELIVERED,
        ],
    ).exists()


def shipment_ship_locked(shipment: Shipment, *, carrier: str, tracking_number: str) -> bool:
    """Record that the shipment left the warehouse. Return whether it changed."""
    if shipment.status not in (
        Shipment.Status.ACCEPTED,
        Shipment.Status.PARTIALLY_SHIPPED,
        Shipment.Status.WITHDRAWN,
    ):
        return False
    shipment.ship()
    shipment.carrier = carrier[:64]
    shipment.tracking_number = tracking_number[:128]
    shipment.shipped_at = timezone.now()
    shipment.save(
        update_fields=["status", "carrier", "tracking_number", "shipped_at", "updated_at"]
    )
    return True


def shipment_deliver_locked(shipment: Shipment) -> bool:
    """Record that the shipment reached the customer. Return whether it changed."""
    if shipment.status != Shipment.Status.SHIPPED:
        return False
    shipment.deliver()
    shipment.delivered_at = timezone.now()
    shipment.save(update_fields=["status", "delivered_at", "updated_at"])
    return True


def shipments_all_left(*, order_id: uuid.UUID | str) -> bool:
    """Every shipment of the order left its warehouse (withdrawn ones do not count)."""
    return (
        not Shipment.objects.filter(order_id=order_id)
        .exclude(status__in=[Shipment.Status.SHIPPED, Shipment.Status.DELIVERED])
        .exclude(status=Shipment.Status.WITHDRAWN)
        .exists()
    )


def shipments_all_delivered(*, order_id: uuid.UUID | str) -> bool:
    return (
        not Shipment.objects.filter(order_id=order_id)
        .exclude(status__in=[Shipment.Status.DELIVERED, Shipment.Status.WITHDRAWN])
        .exists()
    )


def shipment_get(*, warehouse: Warehouse, reference: str) -> Shipment | None:
    return Shipment.objects.filter(warehouse=warehouse, reference=reference).first()


def warehouse_get_by_code(code: str) -> Warehouse:
    warehouse = Warehouse.objects.filter(code=code).first()
    if warehouse is None or not warehouse.fulfilment_secret:
        raise NotFound("Unknown warehouse.")
    return warehouse
