"""Subscriptions are managed by staff; deliveries and their attempts are records the
workers write. Staff enable a disabled subscription and re-deliver events here (or
through the API)."""

import uuid

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin import ReadOnlyAdmin, ReadOnlyInline
from events.models import EventDelivery, EventDeliveryAttempt, EventSubscription
from events.services import event_redeliver, event_subscription_enable


@admin.register(EventSubscription)
class EventSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "topics", "is_active", "disabled_at", "updated_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "url"]
    fields = [
        "name",
        "url",
        "secret",
        "previous_secret",
        "previous_secret_expires_at",
        "topics",
        "is_active",
        "disabled_at",
        "disabled_reason",
        "failing_since",
        "failed_attempts",
    ]
    readonly_fields = ["disabled_at", "disabled_reason", "failing_since", "failed_attempts"]
    actions = ["enable"]

    @admin.action(
        description="Enable again (pending deliveries go out at once)", permissions=["change"]
    )
    def enable(self, request: HttpRequest, queryset: QuerySet[EventSubscription]) -> None:
        for subscription in queryset:
            event_subscription_enable(subscription_id=subscription.pk)
        self.message_user(request, f"{queryset.count()} subscription(s) enabled.", messages.SUCCESS)


class EventDeliveryAttemptInline(ReadOnlyInline):
    model = EventDeliveryAttempt
    fields = readonly_fields = (
        "started_at",
        "duration_ms",
        "response_status",
        "response_excerpt",
        "error",
        "succeeded",
    )


@admin.register(EventDelivery)
class EventDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "event_key",
        "subscription",
        "topic",
        "order",
        "sequence",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status", "topic", "subscription"]
    list_select_related = ["subscription"]
    search_fields = ["event_key", "last_error"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "subscription",
        "event_key",
        "topic",
        "order",
        "sequence",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "delivered_at",
        "created_at",
        "updated_at",
    )
    inlines = [EventDeliveryAttemptInline]
    actions = ["redeliver"]

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        # Whoever may change subscriptions may send them events again.
        return request.user.has_perm("events.change_eventsubscription")

    @admin.action(description="Re-deliver the selected events", permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[EventDelivery]) -> None:
        queued = 0
        for subscription_id, event_id in queryset.filter(event__isnull=False).values_list(
            "subscription_id", "event_id"
        ):
            # The column holds the event's UUID (the key is OrderEvent.id, not its pk).
            queued += event_redeliver(
                subscription_id=subscription_id, event_id=uuid.UUID(str(event_id))
            )
        self.message_user(request, f"{queued} event(s) queued again.", messages.SUCCESS)


@admin.register(EventDeliveryAttempt)
class EventDeliveryAttemptAdmin(ReadOnlyAdmin):
    list_display = [
        "delivery",
        "started_at",
        "response_status",
        "duration_ms",
        "succeeded",
        "error",
    ]
    list_filter = ["succeeded", "response_status"]
    list_select_related = ["delivery", "delivery__subscription"]
    date_hierarchy = "started_at"
    fields = readonly_fields = (
        "delivery",
        "started_at",
        "duration_ms",
        "response_status",
        "response_excerpt",
        "error",
        "succeeded",
    )
