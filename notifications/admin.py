"""Email deliveries are records: staff look, the notifications services write."""

from django.contrib import admin

from core.admin import ReadOnlyAdmin
from notifications.models import EmailDelivery


@admin.register(EmailDelivery)
class EmailDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["order_number", "kind", "status", "attempts", "sent_at", "to_address"]
    list_filter = ["kind", "status"]
    list_select_related = ["order"]
    search_fields = ["order__number", "to_address", "message_id"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "order",
        "kind",
        "status",
        "to_address",
        "subject",
        "attempts",
        "last_error",
        "message_id",
        "sent_at",
        "locked_at",
        "created_at",
        "updated_at",
    )

    @admin.display(description="order", ordering="order__number")
    def order_number(self, delivery: EmailDelivery) -> str:
        return delivery.order.number
