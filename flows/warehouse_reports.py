"""Apply what a warehouse reports on its signed callback: a shipment shipped or
delivered. Repeated reports change nothing.

One transaction, the order then the shipment locked (flows.lock_objects):
- shipped: the units that left (the report's `lines`, or every unit of the request
  still to ship when it names none) are recorded on the shipment and their order lines,
  and their reservations at that warehouse are committed (they leave on_hand and
  reserved). When units of the request are still to ship, the shipment and the order
  are `partially_shipped` (the only place that takes `ship_partially`) and
  `shipment.part_shipped` is published; once none are, the shipment is shipped and
  `shipment.shipped` is published. Either way a worker captures the value of the units
  the report recorded (flows.ship: capturing talks to the provider). A report with an
  event_id seen before on the shipment adds nothing, and so captures nothing.
- delivered: the shipment is delivered, and the order too once all its shipments are
  (flows.deliver).
- return_received: the units of an authorized return arrived at the reporting warehouse,
  each line restocked there or disposed of (flows.returns); a return received already
  is left as it is.
- shipped for an order that was cancelled (a warehouse that shipped without asking):
  the units left all the same, so they leave on_hand too (a `ship` movement on the
  released reservations); nothing is captured. The ledger stays true.
"""

import uuid
from collections.abc import Mapping

from django.db import transaction
from django.db.models import F

from core.actors import Actor
from core.errors import NotFound
from core.outbox import outbox_publish
from flows.deliver import order_deliver_if_complete_locked
from flows.lock_objects import order_lock, shipment_lock
from flows.returns import return_receive_locked
from fulfilment.errors import UnknownShipment
from fulfilment.models import Shipment, ShipmentLine
from fulfilment.services import (
    shipment_deliver_locked,
    shipment_get,
    shipment_lines_record_locked,
    shipment_ship_locked,
    shipment_ship_part_locked,
    shipment_unshipped,
)
from inventory.models import Warehouse
from inventory.services import reservations_commit_quantity, reservations_ship_released
from orders.audit import order_event_record
from orders.models import Order, OrderLine, Return
from orders.services import order_transition_locked
from orders.states import OrderStatus, ReturnStatus


def shipment_report_apply(
    *,
    warehouse: Warehouse,
    event: str,
    reference: str,
    carrier: str,
    tracking_number: str,
    event_id: str = "",
    lines: dict[str, int] | None = None,
) -> Shipment:
    """Apply a warehouse's shipped / delivered report (`lines`: units per SKU that left;
    None: all the request's units still to ship)."""
    actor = Actor.system()
    shipment = shipment_get(warehouse=warehouse, reference=reference)
    if shipment is None:
        raise UnknownShipment(f"Warehouse {warehouse.code} has no shipment '{reference}'.")
    with transaction.atomic():
        order, shipment = shipment_lock(shipment_id=shipment.pk)
        if order.status == OrderStatus.CANCELLED and shipment.status in (
            Shipment.Status.ACCEPTED,
            Shipment.Status.WITHDRAWN,
        ):
            _shipped_after_cancel(
                order, shipment, actor, carrier=carrier, tracking_number=tracking_number
            )
        elif event == "delivered" and shipment.status == Shipment.Status.PARTIALLY_SHIPPED:
            return shipment  # a part arrived; the rest has not left, so nothing changes
        elif shipment.status in (Shipment.Status.ACCEPTED, Shipment.Status.PARTIALLY_SHIPPED):
            _shipped_lines_apply(
                order,
                shipment,
                actor,
                event_id=event_id,
                lines=None if event == "delivered" else lines,  # delivered: all of it left
                carrier=carrier,
                tracking_number=tracking_number,
            )
        elif shipment_ship_locked(shipment, carrier=carrier, tracking_number=tracking_number):
            _shipment_shipped(order, shipment)  # shipped after its withdrawal
        if event == "delivered" and shipment_deliver_locked(shipment):
            _shipment_event(order, shipment)
            order_deliver_if_complete_locked(order=order, actor=actor)
    return shipment


def _shipped_lines_apply(
    order: Order,
    shipment: Shipment,
    actor: Actor,
    *,
    event_id: str,
    lines: dict[str, int] | None,
    carrier: str,
    tracking_number: str,
) -> None:
    order_lines = {line.sku: line for line in order.lines.all()}
    shipping = shipment_lines_record_locked(
        shipment,
        event_id=event_id,
        lines=lines,
        order_line_ids={sku: line.pk for sku, line in order_lines.items()},
    )
    if not shipping:
        return  # a report applied before, or nothing left to ship
    for sku, quantity in shipping.items():
        line = order_lines[sku]
        OrderLine.objects.filter(pk=line.pk).update(
            shipped_quantity=F("shipped_quantity") + quantity
        )
        reservations_commit_quantity(
            order_line_id=line.pk,
            warehouse_id=shipment.warehouse_id,
            quantity=quantity,
            actor=actor,
            reason=f"order {order.number}: {quantity} x {sku} shipped",
        )
    if shipment_unshipped(shipment):
        shipment_ship_part_locked(shipment, carrier=carrier, tracking_number=tracking_number)
        _shipment_event(order, shipment, shipped=shipping)
        # Its units are captured on their own (flows.ship), by a worker.
        last_line_id = ShipmentLine.objects.filter(shipment=shipment).latest("pk").pk
        outbox_publish(
            topic="shipment.part_shipped",
            payload={"order_id": str(order.pk), "shipment_id": shipment.pk},
            key=f"shipment-part-shipped-{shipment.pk}-{last_line_id}",
        )
        if order.status == OrderStatus.ROUTED:
            order_transition_locked(
                order=order,
                transition="ship_partially",
                actor=actor,
                reason=f"warehouse {shipment.warehouse.code} shipped part of the order",
            )
        return
    shipment_ship_locked(shipment, carrier=carrier, tracking_number=tracking_number)
    _shipment_shipped(order, shipment, shipped=shipping)


def _shipment_shipped(
    order: Order, shipment: Shipment, shipped: dict[str, int] | None = None
) -> None:
    _shipment_event(order, shipment, shipped=shipped)
    outbox_publish(
        topic="shipment.shipped",
        payload={"order_id": str(order.pk), "shipment_id": shipment.pk},
        key=f"shipment-shipped-{shipment.pk}",
    )


def _shipped_after_cancel(
    order: Order, shipment: Shipment, actor: Actor, *, carrier: str, tracking_number: str
) -> None:
    reservations_ship_released(
        order_line_ids=list(order.lines.values_list("pk", flat=True)),
        warehouse_id=shipment.warehouse_id,
        actor=actor,
        reason=f"shipped by the warehouse after order {order.number} was cancelled",
    )
    if shipment_ship_locked(shipment, carrier=carrier, tracking_number=tracking_number):
        _shipment_event(order, shipment)


def _shipment_event(
    order: Order, shipment: Shipment, *, shipped: dict[str, int] | None = None
) -> None:
    change: dict[str, object] = {
        "shipment_id": shipment.pk,
        "reference": shipment.reference,
        "warehouse": shipment.warehouse.code,
        "status": shipment.status,
        "carrier": shipment.carrier,
        "tracking_number": shipment.tracking_number,
    }
    if shipped is not None:
        change["lines"] = [{"sku": sku, "quantity": q} for sku, q in sorted(shipped.items())]
    order_event_record(order=order, type=f"shipment.{shipment.status}", change=change)


def return_report_apply(
    *, warehouse: Warehouse, return_id: uuid.UUID | str, dispositions: Mapping[str, str]
) -> Return:
    """Apply a warehouse's return_received report: restock there (or dispose of) each
    line of the authorized return. A repeated report changes nothing."""
    order_id = Return.objects.filter(pk=return_id).values_list("order_id", flat=True).first()
    if order_id is None:
        raise NotFound(f"No return {return_id}.")
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        return_request = Return.objects.select_for_update().get(pk=return_id)
        if return_request.status in (ReturnStatus.RECEIVED, ReturnStatus.REFUNDED):
            return return_request
        return_receive_locked(
            order=order,
            return_request=return_request,
            dispositions=dispositions,
            warehouse=warehouse,
            actor=Actor.system(),
        )
    return return_request
