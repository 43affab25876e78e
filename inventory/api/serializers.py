from rest_framework import serializers

from core.api import fields
from inventory.models import StockItem, Warehouse

MAX_PRICE = 10**12  # minor units; far above any real unit price
MAX_ADJUSTMENT = 1_000_000


class CurrencyField(fields.RegexField):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(
            r"^[A-Za-z]{3}$",
            error_messages={"invalid": "Use a three-letter ISO 4217 code, e.g. EUR."},
            **kwargs,  # type: ignore[arg-type]
        )


class ProductInputSerializer(serializers.Serializer):
    sku = fields.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        error_messages={"invalid": "Letters, digits, '.', '_' and '-' only; at most 64."},
    )
    name = fields.CharField(max_length=200)
    price = fields.IntegerField(min_value=0, max_value=MAX_PRICE)
    currency = CurrencyField()


class ProductOutputSerializer(serializers.Serializer):
    sku = fields.CharField()
    name = fields.CharField()
    price = serializers.IntegerField()
    currency = fields.CharField()
    available = serializers.IntegerField()
    allows_backorder = serializers.BooleanField()
    # Units checkouts may still take beyond `available`, to wait for a receipt.
    backorder_available = serializers.IntegerField()


class WarehouseInputSerializer(serializers.Serializer):
    code = fields.SlugField(max_length=32)
    name = fields.CharField(max_length=200)
    region = fields.CharField(max_length=64, required=False, allow_blank=True, default="")
    priority = fields.IntegerField(
        required=False, default=0, min_value=-1_000_000, max_value=1_000_000
    )


class WarehouseOutputSerializer(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active")

    class Meta:
        model = Warehouse
        fields = ["code", "name", "region", "priority", "active"]


class StockItemOutputSerializer(serializers.ModelSerializer):
    sku = fields.CharField(source="product.sku")
    warehouse = fields.CharField(source="warehouse.code")
    available = serializers.IntegerField()

    class Meta:
        model = StockItem
        fields = ["sku", "warehouse", "bucket", "on_hand", "reserved", "available", "updated_at"]


class StockAdjustmentInputSerializer(serializers.Serializer):
    sku = fields.CharField(max_length=64)
    warehouse = fields.CharField(max_length=32)
    quantity = fields.IntegerField(min_value=-MAX_ADJUSTMENT, max_value=MAX_ADJUSTMENT)
    reason = fields.CharField(max_length=255)

    def validate_quantity(self, value: int) -> int:
        if value == 0:
            raise serializers.ValidationError("Must not be zero.", code="zero_quantity")
        return value
