"""Subscriptions are managed by staff; deliveries are records the handler writes."""

from django.contrib import admin

from core.admin import ReadOnlyAdmin
from events.models import EventDelivery, EventSubscription


@admin.register(EventSubscription)
class EventSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "topics", "is_active", "updated_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "url"]
    fields = ["name", "url", "secret", "topics", "is_active"]


@admin.register(EventDelivery)
class EventDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["event_key", "subscription", "topic", "status", "attempts", "delivered_at"]
    list_filter = ["status", "topic", "subscription"]
    list_select_related = ["subscription"]
    search_fields = ["event_key", "last_error"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "subscription",
        "event_key",
        "topic",
        "payload",
        "status",
        "attempts",
        "last_error",
        "delivered_at",
        "created_at",
        "updated_at",
    )
