from collections import Counter
from typing import Any

from django.conf import settings
from rest_framework import serializers

from orders.models import Order, OrderStatusChange
from orders.states import TRANSITIONS


class ShippingAddressSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    line1 = serializers.CharField(max_length=200)
    line2 = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    city = serializers.CharField(max_length=100)
    postal_code = serializers.CharField(max_length=20)
    country = serializers.RegexField(
        r"^[A-Za-z]{2}$",
        error_messages={"invalid": "Use a two-letter ISO 3166-1 code, e.g. DE."},
    )

    def validate_country(self, value: str) -> str:
        return value.upper()


class OrderLineInputSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=settings.ORDER_MAX_LINE_QUANTITY)


class OrderCreateInputSerializer(serializers.Serializer):
    lines = serializers.ListField(
        child=OrderLineInputSerializer(),
        min_length=1,
        max_length=settings.ORDER_MAX_LINES,
    )
    email = serializers.EmailField(max_length=254)
    shipping_address = ShippingAddressSerializer()

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
    sku = serializers.CharField()
    name = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.IntegerField()
    line_total = serializers.IntegerField()


class OrderOutputSerializer(serializers.ModelSerializer):
    lines = OrderLineOutputSerializer(many=True)
    subtotal = serializers.IntegerField(source="subtotal_amount")
    shipping = serializers.IntegerField(source="shipping_amount")
    tax = serializers.IntegerField(source="tax_amount")
    total = serializers.IntegerField(source="total_amount")
    shipping_address = ShippingAddressSerializer()

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
            "shipping_address",
            "reservation_expires_at",
            "created_at",
            "updated_at",
        ]


class OrderStatusChangeOutputSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label")

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
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class OrderTransitionInputSerializer(serializers.Serializer):
    transition = serializers.ChoiceField(choices=list(TRANSITIONS))
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
