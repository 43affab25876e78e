"""Apply what a warehouse reports on its signed callback: a shipment shipped or
delivered. Repeated reports change nothing.

One transaction, the order then the shipment locked (flows.lock_objects):
- shipped: the shipment is recorded as shipped and `shipment.shipped` is published;
  capturing the payment talks to the provider, so a worker does it (flows.ship).
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

from core.actors import Actor
from core.errors import NotFound
from core.outbox import outbox_publish
from flows.deliver import order_deliver_if_complete_locked
from flows.lock_objects import order_lock, shipment_lock
from flows.returns import return_receive_locked
from fulfilment.errors import UnknownShipment
from fulfilment.models import Shipment
from fulfilment.services import shipment_deliver_locked, shipment_get, shipment_ship_locked
from inventory.models import Warehouse
from inventory.services import reservations_ship_released
from orders.audit import order_event_record
from orders.models import Order, Return
from orders.states import OrderStatus, ReturnStatus


def shipment_report_apply(
    *, warehouse: Warehouse, event: str, reference: str, carrier: str, tracking_number: str
) -> Shipment:
    """Apply a warehouse's shipped / delivered report."""
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
        elif shipment_ship_locked(shipment, carrier=carrier, tracking_number=tracking_number):
            _shipment_event(order, shipment)
            outbox_publish(
                topic="shipment.shipped",
                payload={"order_id": str(order.pk), "shipment_id": shipment.pk},
                key=f"shipment-shipped-{shipment.pk}",
            )
        if event == "delivered" and shipment_deliver_locked(shipment):
            _shipment_event(order, shipment)
            order_deliver_if_complete_locked(order=order, actor=actor)
    return shipment


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


def _shipment_event(order: Order, shipment: Shipment) -> None:
    order_event_record(
        order=order,
        type=f"shipment.{shipment.status}",
        change={
            "shipment_id": shipment.pk,
            "reference": shipment.reference,
            "warehouse": shipment.warehouse.code,
            "status": shipment.status,
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_number,
        },
    )


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
