from django.contrib import admin

from core.admin import ReadOnlyAdmin, ReadOnlyInline
from fulfilment.models import FulfilmentRequest, Shipment, ShipmentLine


@admin.register(FulfilmentRequest)
class FulfilmentRequestAdmin(ReadOnlyAdmin):
    list_display = ["id", "order", "warehouse", "status", "attempts", "reject_code", "updated_at"]
    list_filter = ["status", "warehouse"]
    list_select_related = ["order", "warehouse"]
    search_fields = ["order__number", "reject_reason", "last_error"]


class ShipmentLineInline(ReadOnlyInline):
    """The units each shipped report said left."""

    model = ShipmentLine
    fields = ["sku", "quantity", "event_id", "created_at"]
    readonly_fields = ["sku", "quantity", "event_id", "created_at"]


@admin.register(Shipment)
class ShipmentAdmin(ReadOnlyAdmin):
    inlines = [ShipmentLineInline]
    list_display = [
        "reference",
        "order",
        "warehouse",
        "status",
        "carrier",
        "tracking_number",
        "shipped_at",
        "delivered_at",
    ]
    list_filter = ["status", "warehouse", "carrier"]
    list_select_related = ["order", "warehouse"]
    search_fields = ["reference", "order__number", "tracking_number"]
