from django.db import models


class OrderStatus(models.TextChoices):
    # Stock is held; waiting for the payment to be authorized.
    PENDING_PAYMENT = "pending_payment", "Pending payment"
    # The payment attempt failed; stock stays held until the reservation expires.
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    # Payment authorized; waiting to be routed to a warehouse.
    CONFIRMED = "confirmed", "Confirmed"
    # A warehouse accepted the fulfilment request.
    ROUTED = "routed", "Routed"
    # Left the warehouse; stock committed (gone from on_hand and reserved).
    SHIPPED = "shipped", "Shipped"
    # Reached the customer.
    DELIVERED = "delivered", "Delivered"
    # Fully refunded after shipment.
    REFUNDED = "refunded", "Refunded"
    # Cancelled before shipment; stock released.
    CANCELLED = "cancelled", "Cancelled"
    # Not paid before the reservation ran out; stock released.
    EXPIRED = "expired", "Expired"


# States an order never leaves.
TERMINAL_STATUSES = frozenset({OrderStatus.REFUNDED, OrderStatus.CANCELLED, OrderStatus.EXPIRED})

# Every transition an order can take, by name (the Order model's transition methods).
TRANSITIONS = (
    "confirm",
    "fail_payment",
    "retry_payment",
    "expire",
    "cancel",
    "route",
    "ship",
    "deliver",
    "refund",
)
# Transitions a customer may ask for on their own order; the rest are staff or system.
CUSTOMER_TRANSITIONS = frozenset({"cancel"})

# States in which the order uses its payment's authorization (or its capture): a
# payment is never voided under them.
STATUSES_USING_PAYMENT = frozenset(
    {
        OrderStatus.CONFIRMED,
        OrderStatus.ROUTED,
        OrderStatus.SHIPPED,
        OrderStatus.DELIVERED,
        OrderStatus.REFUNDED,
    }
)

# Every type of event in the order event log (orders.models.OrderEvent).
EVENT_TYPES = (
    "order.created",
    *(f"order.{status}" for status in OrderStatus.values if status != OrderStatus.PENDING_PAYMENT),
    "order.pending_payment",
    "payment.authorized",
    "payment.captured",
    "payment.refunded",
    "shipment.shipped",
    "shipment.delivered",
    "stock.low",
)
