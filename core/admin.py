"""Admin for shared records, and helpers the other apps' admins use."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.models import DeadLetter, IdempotencyKey, OutboxMessage
from core.outbox import dead_letter_redrive


class ReadOnlyAdmin(admin.ModelAdmin):
    """A model staff may look at but never add, change or delete through the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = [
        "key",
        "user",
        "request_method",
        "request_path",
        "status",
        "response_status",
        "created_at",
        "completed_at",
    ]
    list_filter = ["status", "request_method", "created_at"]
    list_select_related = ["user"]
    search_fields = ["key", "user__username", "request_path"]
    date_hierarchy = "created_at"


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "topic",
        "handler",
        "queue",
        "status",
        "attempts",
        "available_at",
        "done_at",
        "created_at",
    ]
    list_filter = ["status", "topic", "handler", "queue"]
    search_fields = ["dedup_key", "topic", "handler"]
    date_hierarchy = "created_at"


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ["id", "task_name", "outbox_message", "created_at", "redriven_at", "error"]
    list_filter = ["task_name", "redriven_at"]
    search_fields = ["task_name", "error"]
    date_hierarchy = "created_at"
    actions = ["redrive"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Re-driving changes state: it needs the change permission a ReadOnlyAdmin hides.
        actions = super().get_actions(request)
        if not request.user.has_perm("core.change_deadletter"):
            actions.pop("redrive", None)
        return actions

    @admin.action(description="Re-drive: send the task again")
    def redrive(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        sent = sum(dead_letter_redrive(dead_letter_id=dead.pk) for dead in queryset)
        skipped = queryset.count() - sent
        self.message_user(
            request,
            f"Re-drove {sent} task(s)"
            + (f"; {skipped} were re-driven before." if skipped else "."),
            messages.SUCCESS if sent else messages.WARNING,
        )
