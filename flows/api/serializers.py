from collections import Counter
from datetime import datetime, tzinfo
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from core.api import fields
from orders import selectors
from orders.models import Order, OrderStatusChange
from orders.states import TRANSITIONS, OrderStatus
from payments.models import Payment


class ShippingAddressSerializer(serializers.Serializer):
    name = fields.CharField(max_length=200)
    line1 = fields.CharField(max_length=200)
    line2 = fields.CharField(max_length=200, required=False, allow_blank=True, default="")
    city = fields.CharField(max_length=100)
    postal_code = fields.CharField(max_length=20)
    country = fields.RegexField(
        r"^[A-Za-z]{2}$",
        error_messages={"invalid": "Use a two-letter ISO 3166-1 code, e.g. DE."},
    )

    def validate_country(self, value: str) -> str:
        return value.upper()


class OrderLineInputSerializer(serializers.Serializer):
    sku = fields.CharField(max_length=64)
    quantity = fields.IntegerField(min_value=1, max_value=settings.ORDER_MAX_LINE_QUANTITY)


PAYMENT_METHOD_FIELD_KWARGS: dict[str, Any] = {
    "regex": r"^[A-Za-z0-9_]{1,255}$",
    "error_messages": {"invalid": "A payment method id such as pm_card_visa."},
}


class OrderCreateInputSerializer(serializers.Serializer):
    lines = serializers.ListField(
        child=OrderLineInputSerializer(),
        min_length=1,
        max_length=settings.ORDER_MAX_LINES,
    )
    email = fields.EmailField(max_length=254)
    shipping_address = ShippingAddressSerializer()
    # Priced by the pricing provider; an unknown method or one with no rate to the
    # country answers 422 shipping_unavailable.
    shipping_method = fields.RegexField(
        r"^[a-z_]{1,16}$",
        required=False,
        default="standard",
        error_messages={"invalid": "A shipping method such as standard or express."},
    )
    # Optional: without it the order waits in pending_payment for POST .../pay/.
    payment_method = fields.RegexField(required=False, **PAYMENT_METHOD_FIELD_KWARGS)

    def validate_lines(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        counts = Counter(line["sku"] for line in lines)
        duplicates = sorted(sku for sku, count in counts.items() if count > 1)
        if duplicates:
            raise serializers.ValidationError(
                f"Each SKU may appear on one line only; repeated: {', '.join(duplicates)}.",
                code="duplicate_sku",
            )
        return lines


class OrderLineOutputSerializer(serializers.Serializer):
    sku = fields.CharField()
    name = fields.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.IntegerField()
    line_total = serializers.IntegerField()
    tax_amount = serializers.IntegerField()


class PaymentOutputSerializer(serializers.Serializer):
    status = fields.CharField()
    amount = serializers.IntegerField()
    amount_captured = serializers.IntegerField()
    amount_refunded = serializers.IntegerField()
    currency = fields.CharField()
    decline_code = fields.CharField()
    client_secret = serializers.SerializerMethodField()

    def get_client_secret(self, payment: Payment) -> str | None:
        """Only while the customer must authenticate (3-D Secure)."""
        if payment.status == Payment.Status.REQUIRES_ACTION:
            return payment.client_secret
        return None


class OrderOutputSerializer(serializers.ModelSerializer):
    lines = OrderLineOutputSerializer(many=True)
    subtotal = serializers.IntegerField(source="subtotal_amount")
    shipping = serializers.IntegerField(source="shipping_amount")
    tax = serializers.IntegerField(source="tax_amount")
    total = serializers.IntegerField(source="total_amount")
    shipping_method = fields.CharField()
    shipping_address = ShippingAddressSerializer()
    payment = serializers.SerializerMethodField()
    reservation_expires_at = serializers.SerializerMethodField()

    class Meta:
        model = Order
        fields = [
            "id",
            "number",
            "status",
            "lines",
            "subtotal",
            "shipping",
            "tax",
            "total",
            "currency",
            "email",
            "shipping_method",
            "shipping_address",
            "reservation_expires_at",
            "payment",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_reservation_expires_at(
        self, order: "Order | selectors.OrderRow", zone: tzinfo | None = None
    ) -> str | None:
        """Until when the stock is held for the unpaid order; null once it no longer is
        held for payment (paid, cancelled or expired)."""
        if order.status not in (OrderStatus.PENDING_PAYMENT, OrderStatus.PAYMENT_FAILED):
            return None
        return _datetime(order.reservation_expires_at, zone)

    @extend_schema_field(PaymentOutputSerializer(allow_null=True))
    def get_payment(self, order: Order) -> dict[str, Any] | None:
        """The latest payment attempt, or null."""
        latest = _latest_payment(order)
        return None if latest is None else dict(PaymentOutputSerializer(latest).data)

    def to_representation(self, instance: "Order | selectors.OrderRow") -> dict[str, Any]:
        """The fields declared above, built directly: this is the hottest response (every
        checkout, order read and order action), and DRF's generic path (a deep copy of
        the fields per serializer, one call per field) costs more than the rest of the
        rendering. An Order or an OrderRow (a page of orders is read as rows).
        tests/perf/test_order_rendering.py holds it equal to the generic path."""
        order = instance
        zone = timezone.get_current_timezone()
        return {
            "id": str(order.pk),
            "number": _text(order.number),
            "status": _text(order.status),
            "lines": [
                {
                    "sku": _text(line.sku),
                    "name": _text(line.name),
                    "quantity": line.quantity,
                    "unit_price": line.unit_price,
                    "line_total": line.line_total,
                    "tax_amount": line.tax_amount,
                }
                for line in selectors.order_lines(order)
            ],
            "subtotal": order.subtotal_amount,
            "shipping": order.shipping_amount,
            "tax": order.tax_amount,
            "total": order.total_amount,
            "currency": _text(order.currency),
            "email": _text(order.email),
            "shipping_method": _text(order.shipping_method),
            "shipping_address": _address(order.shipping_address),
            "reservation_expires_at": self.get_reservation_expires_at(order, zone),
            "payment": _payment(order),
            "created_at": _datetime(order.created_at, zone),
            "updated_at": _datetime(order.updated_at, zone),
        }

    def declared_representation(self, instance: Order) -> dict[str, Any]:
        """DRF's generic rendering of the declared fields (what to_representation must
        equal)."""
        return dict(super().to_representation(instance))


_ADDRESS_FIELDS = ShippingAddressSerializer().fields


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _datetime(value: datetime | None, zone: tzinfo | None = None) -> str | None:
    """What DRF's DateTimeField renders (DATETIME_FORMAT iso-8601) for an aware
    datetime: in the current time zone (`zone`, when the caller has looked it up), UTC
    written as Z."""
    if value is None:
        return None
    text = value.astimezone(zone or timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _address(address: dict[str, Any]) -> dict[str, Any]:
    rendered = {}
    for name, field in _ADDRESS_FIELDS.items():
        value = address[name] if name in address or field.default is empty else field.default
        rendered[name] = _text(value)
    return rendered


def _latest_payment(order: "Order | selectors.OrderRow") -> Any:
    payments = selectors.order_payments(order)
    return max(payments, key=lambda p: (p.created_at, p.pk)) if payments else None


def _payment(order: "Order | selectors.OrderRow") -> dict[str, Any] | None:
    """PaymentOutputSerializer's rendering of the latest payment (a Payment or a
    PaymentRow), built directly."""
    payment = _latest_payment(order)
    if payment is None:
        return None
    return {
        "status": _text(payment.status),
        "amount": payment.amount,
        "amount_captured": payment.amount_captured,
        "amount_refunded": payment.amount_refunded,
        "currency": _text(payment.currency),
        "decline_code": _text(payment.decline_code),
        "client_secret": (
            payment.client_secret if payment.status == Payment.Status.REQUIRES_ACTION else None
        ),
    }


class OrderStatusChangeOutputSerializer(serializers.ModelSerializer):
    actor = fields.CharField(source="actor_label")

    class Meta:
        model = OrderStatusChange
        fields = [
            "from_status",
            "to_status",
            "transition",
            "actor",
            "reason",
            "request_id",
            "created_at",
        ]


class OrderCancelInputSerializer(serializers.Serializer):
    reason = fields.CharField(max_length=500, required=False, allow_blank=True, default="")


class OrderTransitionInputSerializer(serializers.Serializer):
    transition = fields.ChoiceField(choices=list(TRANSITIONS))
    reason = fields.CharField(max_length=500, required=False, allow_blank=True, default="")


class OrderPayInputSerializer(serializers.Serializer):
    payment_method = fields.RegexField(**PAYMENT_METHOD_FIELD_KWARGS)


class OrderRefundInputSerializer(serializers.Serializer):
    # Minor units; all that is left when omitted.
    amount = fields.IntegerField(required=False, min_value=1, max_value=10**12)


class WebhookAckSerializer(serializers.Serializer):
    received = serializers.BooleanField()
    duplicate = serializers.BooleanField()


class ShippedLineSerializer(serializers.Serializer):
    sku = fields.CharField(max_length=64)
    quantity = fields.IntegerField(min_value=1)


class ShipmentCallbackInputSerializer(serializers.Serializer):
    event = fields.ChoiceField(choices=["shipped", "delivered"])
    event_id = fields.CharField(max_length=128, required=False, allow_blank=True, default="")
    shipment_reference = fields.CharField(max_length=128)
    # The units that left (shipped only); absent: every unit of the request still to ship.
    lines = ShippedLineSerializer(many=True, required=False, allow_empty=False)
    request_id = fields.CharField(max_length=64, required=False, allow_blank=True)
    carrier = fields.CharField(max_length=64, required=False, allow_blank=True, default="")
    tracking_number = fields.CharField(max_length=128, required=False, allow_blank=True, default="")


class ShipmentCallbackOutputSerializer(serializers.Serializer):
    shipment_reference = fields.CharField(source="reference")
    status = fields.CharField()


class ReturnLineInputSerializer(serializers.Serializer):
    sku = fields.CharField(max_length=64)
    quantity = fields.IntegerField(min_value=1, max_value=settings.ORDER_MAX_LINE_QUANTITY)


class ReturnCreateInputSerializer(serializers.Serializer):
    lines = serializers.ListField(
        child=ReturnLineInputSerializer(), min_length=1, max_length=settings.ORDER_MAX_LINES
    )
    reason = fields.CharField(max_length=500)

    def validate_lines(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        counts = Counter(line["sku"] for line in lines)
        duplicates = sorted(sku for sku, count in counts.items() if count > 1)
        if duplicates:
            raise serializers.ValidationError(
                f"Each SKU may appear on one line only; repeated: {', '.join(duplicates)}.",
                code="duplicate_sku",
            )
        return lines


class ReturnReasonInputSerializer(serializers.Serializer):
    reason = fields.CharField(max_length=500, required=False, allow_blank=True, default="")


class ReturnDispositionInputSerializer(serializers.Serializer):
    sku = fields.CharField(max_length=64)
    disposition = fields.ChoiceField(choices=["restock", "dispose"])


class ReturnReceiveInputSerializer(serializers.Serializer):
    # Per line: restock (default) or dispose.
    lines = serializers.ListField(
        child=ReturnDispositionInputSerializer(),
        required=False,
        default=list,
        max_length=settings.ORDER_MAX_LINES,
    )
    # Where the units arrived (default: the warehouse each line shipped from).
    warehouse = fields.CharField(max_length=32, required=False, allow_blank=True, default="")


class ReturnLineOutputSerializer(serializers.Serializer):
    sku = fields.CharField(source="order_line.sku")
    name = fields.CharField(source="order_line.name")
    quantity = serializers.IntegerField()
    unit_price = serializers.IntegerField(source="order_line.unit_price")
    disposition = fields.CharField()


class ReturnOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    order_id = serializers.UUIDField()
    status = fields.CharField()
    reason = fields.CharField()
    lines = ReturnLineOutputSerializer(many=True)
    warehouse = fields.CharField(source="warehouse.code", allow_null=True, default=None)
    # Minor units of the order's currency; null until the refund is prepared.
    refund_amount = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ReturnReceiptCallbackInputSerializer(serializers.Serializer):
    event = fields.ChoiceField(choices=["return_received"])
    return_id = serializers.UUIDField()
    request_id = fields.CharField(max_length=64, required=False, allow_blank=True)
    lines = serializers.ListField(
        child=ReturnDispositionInputSerializer(),
        required=False,
        default=list,
        max_length=settings.ORDER_MAX_LINES,
    )


class OrderEditLineInputSerializer(serializers.Serializer):
    sku = fields.CharField(max_length=64)
    # The line's new quantity; 0 removes it.
    quantity = fields.IntegerField(min_value=0, max_value=settings.ORDER_MAX_LINE_QUANTITY)


class OrderEditInputSerializer(serializers.Serializer):
    lines = serializers.ListField(
        child=OrderEditLineInputSerializer(), required=False, max_length=settings.ORDER_MAX_LINES
    )
    shipping_address = ShippingAddressSerializer(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("lines") and "shipping_address" not in attrs:
            raise serializers.ValidationError(
                "An edit changes lines, the shipping address, or both.", code="empty_edit"
            )
        return attrs

    def validate_lines(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        counts = Counter(line["sku"] for line in lines)
        duplicates = sorted(sku for sku, count in counts.items() if count > 1)
        if duplicates:
            raise serializers.ValidationError(
                f"Each SKU may appear on one line only; repeated: {', '.join(duplicates)}.",
                code="duplicate_sku",
            )
        return lines


class OrderEditCommitInputSerializer(serializers.Serializer):
    # For an edit that re-authorizes: pay with this instead of the order's payment method.
    payment_method = fields.CharField(max_length=255, required=False)


class OrderEditOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    order_id = serializers.UUIDField()
    status = fields.CharField()
    # The request: SKU -> new quantity, and the new address (null: unchanged).
    lines = serializers.DictField(child=serializers.IntegerField())
    shipping_address = serializers.DictField(allow_null=True)
    # The priced preview, in minor units of the order's currency.
    subtotal = serializers.IntegerField(source="subtotal_amount")
    shipping = serializers.IntegerField(source="shipping_amount")
    tax = serializers.IntegerField(source="tax_amount")
    total = serializers.IntegerField(source="total_amount")
    line_taxes = serializers.DictField(child=serializers.IntegerField())
    # none, reduce (capture at shipment takes the new total) or reauthorize (the commit
    # authorizes the new total, then voids the old authorization).
    payment_action = fields.CharField()
    created_at = serializers.DateTimeField()
    committed_at = serializers.DateTimeField(allow_null=True)
