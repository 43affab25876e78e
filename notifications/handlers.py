"""Outbox handlers: tell the customer what happened to their order."""

from typing import Any

from core.outbox import outbox_handler
from fulfilment.models import Shipment
from notifications.models import EmailDelivery
from notifications.services import order_email_send
from payments.models import Payment

_KIND_BY_TOPIC = {
    "order.confirmed": EmailDelivery.Kind.ORDER_CONFIRMED,
    "order.awaiting_stock": EmailDelivery.Kind.ORDER_AWAITING_STOCK,
    "order.payment_failed": EmailDelivery.Kind.PAYMENT_FAILED,
    "order.cancelled": EmailDelivery.Kind.ORDER_CANCELLED,
    "order.refunded": EmailDelivery.Kind.ORDER_REFUNDED,
    "order.delivered": EmailDelivery.Kind.ORDER_DELIVERED,
}


@outbox_handler(*_KIND_BY_TOPIC, name="notifications.order_status_email", queue="emails")
def order_status_email(payload: dict[str, Any]) -> None:
    kind = _KIND_BY_TOPIC[f"order.{payload['to_status']}"]
    if kind == EmailDelivery.Kind.ORDER_CONFIRMED and payload["from_status"] == "awaiting_stock":
        # The customer was told of the order when it began to wait; now, that it goes on.
        kind = EmailDelivery.Kind.BACKORDER_IN_STOCK
    if (
        kind == EmailDelivery.Kind.ORDER_REFUNDED
        and Payment.objects.filter(order_id=payload["order_id"], amount_refunded__gt=0).exists()
    ):
        return  # refunded through the provider: each refund had its own notice
    order_email_send(order_id=payload["order_id"], kind=kind)


@outbox_handler("payment.refunded", name="notifications.refund_issued_email", queue="emails")
def refund_issued_email(payload: dict[str, Any]) -> None:
    """Every refund, partial or full, with that refund's amount."""
    order_email_send(
        order_id=payload["order_id"],
        kind=EmailDelivery.Kind.REFUND_ISSUED,
        context={
            "refund_amount": payload["amount"],
            "refunded_total": payload["amount_refunded"],
        },
        dedup_key=f"refunded-total-{payload['amount_refunded']}",
    )


@outbox_handler("order.shipped", name="notifications.order_shipped_email", queue="emails")
def order_shipped_email(payload: dict[str, Any]) -> None:
    shipments = Shipment.objects.filter(order_id=payload["order_id"]).exclude(tracking_number="")
    carriers = ", ".join(sorted({s.carrier for s in shipments if s.carrier}))
    tracking = ", ".join(s.tracking_number for s in shipments)
    order_email_send(
        order_id=payload["order_id"],
        kind=EmailDelivery.Kind.ORDER_SHIPPED,
        context={
            "carrier": carriers or "our shipping team",
            "tracking_number": tracking or "not available",
        },
    )


@outbox_handler("return.authorized", name="notifications.return_authorized_email", queue="emails")
def return_authorized_email(payload: dict[str, Any]) -> None:
    """What to send back, once per return."""
    order_email_send(
        order_id=payload["order_id"],
        kind=EmailDelivery.Kind.RETURN_AUTHORIZED,
        context={"return_id": payload["return_id"], "return_lines": payload["lines"]},
        dedup_key=f"return-{payload['return_id']}",
    )


@outbox_handler("order.edited", name="notifications.order_updated_email", queue="emails")
def order_updated_email(payload: dict[str, Any]) -> None:
    """The order as an edit left it, once per committed edit."""
    order_email_send(
        order_id=payload["order_id"],
        kind=EmailDelivery.Kind.ORDER_UPDATED,
        context={},
        dedup_key=f"edit-{payload['edit_id']}",
    )


@outbox_handler(
    "order.rest_cancelled", name="notifications.order_rest_cancelled_email", queue="emails"
)
def order_rest_cancelled_email(payload: dict[str, Any]) -> None:
    """What will not ship, once per withdrawn fulfilment request."""
    order_email_send(
        order_id=payload["order_id"],
        kind=EmailDelivery.Kind.ORDER_REST_CANCELLED,
        context={"cancelled_lines": payload["lines"]},
        dedup_key=f"rest-cancelled-{payload['request_id']}",
    )
