from django.db import models


class OrderStatus(models.TextChoices):
    # Stock is held; waiting for the payment to be authorized.
    PENDING_PAYMENT = "pending_payment", "Pending payment"
    # The payment attempt failed; stock stays held until the reservation expires.
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    # Payment authorized, but some units are backordered: waiting for a stock receipt
    # to cover them (not routed, not expired meanwhile).
    AWAITING_STOCK = "awaiting_stock", "Awaiting stock"
    # Payment authorized; waiting to be routed to a warehouse.
    CONFIRMED = "confirmed", "Confirmed"
    # A warehouse accepted the fulfilment request.
    ROUTED = "routed", "Routed"
    # Some units left a warehouse, others are still to ship; nothing captured yet.
    PARTIALLY_SHIPPED = "partially_shipped", "Partially shipped"
    # Left the warehouse; stock committed (gone from on_hand and reserved).
    SHIPPED = "shipped", "Shipped"
    # Reached the customer.
    DELIVERED = "delivered", "Delivered"
    # Fully refunded after shipment.
    REFUNDED = "refunded", "Refunded"
    # Some of the shipped units came back and were refunded (a return, see ReturnStatus).
    PARTIALLY_RETURNED = "partially_returned", "Partially returned"
    # Every shipped unit came back and was refunded through returns.
    RETURNED = "returned", "Returned"
    # Cancelled before shipment; stock released.
    CANCELLED = "cancelled", "Cancelled"
    # Not paid before the reservation ran out; stock released.
    EXPIRED = "expired", "Expired"


# States an order never leaves.
TERMINAL_STATUSES = frozenset(
    {OrderStatus.REFUNDED, OrderStatus.RETURNED, OrderStatus.CANCELLED, OrderStatus.EXPIRED}
)

# Every transition an order can take, by name (the Order model's transition methods).
TRANSITIONS = (
    "confirm",
    "await_stock",
    "stock_arrive",
    "fail_payment",
    "retry_payment",
    "expire",
    "cancel",
    "route",
    "ship_partially",
    "ship",
    "deliver",
    "refund",
    "return_partially",
    "return_fully",
)
# Transitions a customer may ask for on their own order; the rest are staff or system.
CUSTOMER_TRANSITIONS = frozenset({"cancel"})

# States in which the order uses its payment's authorization (or its capture): a
# payment is never voided under them.
STATUSES_USING_PAYMENT = frozenset(
    {
        OrderStatus.AWAITING_STOCK,
        OrderStatus.CONFIRMED,
        OrderStatus.ROUTED,
        OrderStatus.PARTIALLY_SHIPPED,
        OrderStatus.SHIPPED,
        OrderStatus.DELIVERED,
        OrderStatus.REFUNDED,
        OrderStatus.PARTIALLY_RETURNED,
        OrderStatus.RETURNED,
    }
)

# Orders whose shipped units a customer may send back (a return).
RETURNABLE_STATUSES = (
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
    OrderStatus.PARTIALLY_RETURNED,
)


class ReturnStatus(models.TextChoices):
    # Opened by the customer or support; its units count as returned on their lines.
    REQUESTED = "requested", "Requested"
    # Staff (or the return window) agreed: the customer sends the units back.
    AUTHORIZED = "authorized", "Authorized"
    # The units arrived: restocked or disposed of, line by line; the refund is due.
    RECEIVED = "received", "Received"
    # The refund went through (or nothing was left to refund).
    REFUNDED = "refunded", "Refunded"
    # Staff refused it; its units no longer count as returned.
    REJECTED = "rejected", "Rejected"
    # The customer or staff withdrew it; its units no longer count as returned.
    CANCELLED = "cancelled", "Cancelled"


# Returns whose units count against what may still be returned (open or completed).
RETURN_OPEN_STATUSES = (ReturnStatus.REQUESTED, ReturnStatus.AUTHORIZED)
RETURN_COUNTED_STATUSES = (*RETURN_OPEN_STATUSES, ReturnStatus.RECEIVED, ReturnStatus.REFUNDED)

# Every type of event in the order event log (orders.models.OrderEvent).
EVENT_TYPES = (
    "order.created",
    *(f"order.{status}" for status in OrderStatus.values if status != OrderStatus.PENDING_PAYMENT),
    "order.pending_payment",
    "payment.authorized",
    "payment.captured",
    "payment.refunded",
    "payment.voided",
    "shipment.partially_shipped",
    "shipment.shipped",
    "order.rest_cancelled",
    "shipment.delivered",
    "stock.low",
    *(f"return.{status}" for status in ReturnStatus.values),
)
