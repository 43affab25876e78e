"""Outbox handlers: the work an order's state change asks for, run by a worker after
commit. Each is a thin adapter onto one use case and safe to run more than once."""

from typing import Any

from core.actors import Actor
from core.outbox import outbox_handler
from flows.backorders import backorders_allocate
from flows.returns import return_refund
from flows.routing import order_route
from flows.ship import order_ship_when_shipments_left
from flows.void import order_payments_void, payment_void_unused
from payments.errors import VoidPending


@outbox_handler("order.confirmed", name="fulfilment.route_order", queue="routing")
def route_order(payload: dict[str, Any]) -> None:
    order_route(order_id=payload["order_id"])


@outbox_handler("fulfilment.requests_reopened", name="fulfilment.send_reopened", queue="routing")
def send_reopened_requests(payload: dict[str, Any]) -> None:
    """A cancel did not complete: warehouses that withdrew are asked again."""
    order_route(order_id=payload["order_id"])


@outbox_handler(
    "shipment.shipped", "shipment.part_shipped", name="fulfilment.ship_order", queue="payments"
)
def ship_order(payload: dict[str, Any]) -> None:
    """Capture what the shipped units owe; once nothing is left to ship, the final
    capture ships the order."""
    order_ship_when_shipments_left(order_id=payload["order_id"], actor=Actor.system())


@outbox_handler(
    "order.cancelled", "order.expired", name="payments.void_for_order", queue="payments"
)
def void_for_order(payload: dict[str, Any]) -> None:
    order_id = payload["order_id"]
    if not order_payments_void(order_id=order_id, actor=Actor.system()):
        raise VoidPending(f"Authorization of order {order_id} not voided yet")


@outbox_handler("payment.unused", name="payments.void_unused", queue="payments")
def void_unused(payload: dict[str, Any]) -> None:
    """An order edit replaced this authorization, or took it and did not use it."""
    payment_id = payload["payment_id"]
    if not payment_void_unused(payment_id=payment_id, actor=Actor.system()):
        raise VoidPending(f"Authorization {payment_id} not voided yet")


@outbox_handler("return.received", name="payments.refund_return", queue="payments")
def refund_return(payload: dict[str, Any]) -> None:
    """A received return is refunded (retried until it is; the same operation each time)."""
    return_refund(
        order_id=payload["order_id"], return_id=payload["return_id"], actor=Actor.system()
    )


@outbox_handler("stock.received", name="inventory.allocate_backorders", queue="routing")
def allocate_backorders(payload: dict[str, Any]) -> None:
    """A receipt of a product that allows backorders: orders it covered go on."""
    backorders_allocate(
        product_id=payload["product_id"],
        warehouse_id=payload["warehouse_id"],
        order_ids=payload["order_ids"],
        actor=Actor.system(),
    )
