"""Subscriptions are managed by staff; deliveries and their attempts are records the
workers write. Staff enable a disabled subscription and re-deliver events here (or
through the API)."""

import json
import uuid

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.safestring import SafeString

from core.admin import (
    ReadOnlyAdmin,
    ReadOnlyInline,
    action_confirmation,
    created_age_filter,
    json_block,
)
from events.models import EventDelivery, EventDeliveryAttempt, EventSubscription
from events.services import event_body, event_redeliver, event_subscription_enable


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
        "last_error_excerpt",
    ]
    list_filter = ["status", "topic", "subscription", created_age_filter()]
    list_select_related = ["subscription", "order"]
    search_fields = ["event_key", "order__id", "last_error"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "subscription",
        "event_key",
        "topic",
        "order",
        "sequence",
        "body",
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

    @admin.display(description="last error")
    def last_error_excerpt(self, delivery: EventDelivery) -> str:
        return delivery.last_error[:80]

    @admin.display(description="body (as posted)")
    def body(self, delivery: EventDelivery) -> SafeString:
        if delivery.event is None:
            return json_block(delivery.payload)
        return json_block(json.loads(event_body(delivery.event)))

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        # Whoever may change subscriptions may send them events again.
        return request.user.has_perm("events.change_eventsubscription")

    @admin.action(
        description="Re-deliver the selected events (failed or delivered)",
        permissions=["redeliver"],
    )
    def redeliver(
        self, request: HttpRequest, queryset: QuerySet[EventDelivery]
    ) -> TemplateResponse | None:
        # A pending delivery is already on its way: queueing it again would only reset
        # its retry schedule, so a repeated action sends nothing twice.
        settled = queryset.filter(event__isnull=False).exclude(status=EventDelivery.Status.PENDING)
        confirm = action_confirmation(
            self,
            request,
            queryset,
            action="redeliver",
            title="Re-deliver these events?",
            consequence=(
                f"{settled.count()} of the selected deliveries are failed or delivered: each "
                "is posted to its subscriber again, in its order's sequence, with a new "
                "retry schedule and the same Idempotency-Key. Pending ones are on their "
                "way already and are left as they are."
            ),
        )
        if confirm is not None:
            return confirm
        queued = 0
        for subscription_id, event_id in settled.values_list("subscription_id", "event_id"):
            # The column holds the event's UUID (the key is OrderEvent.id, not its pk).
            queued += event_redeliver(
                subscription_id=subscription_id, event_id=uuid.UUID(str(event_id))
            )
        skipped = queryset.count() - queued
        self.message_user(
            request,
            f"{queued} event(s) queued again"
            + (f"; {skipped} pending or without an event, left as they are." if skipped else "."),
            messages.SUCCESS if queued else messages.WARNING,
        )
        return None


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
