"""Admin for shared records, the operations page, and helpers the other apps' admins
use (read-only admins, an age filter, readable JSON, confirmation pages for actions)."""

import json
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core.models import DeadLetter, IdempotencyKey, OperationsPage, OutboxMessage
from core.operations import operations_page_data
from core.outbox import dead_letter_redrive, outbox_message_redrive

# A confirmation page names this many of the selected rows (and counts the rest).
CONFIRMATION_LISTED = 50


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


def created_age_filter(
    field: str = "created_at", title: str = "age"
) -> type[admin.SimpleListFilter]:
    """A list filter on how long ago `field` was: the last minutes, or older than."""
    ages = {
        "10m": ("Last 10 minutes", timedelta(minutes=10), True),
        "1h": ("Last hour", timedelta(hours=1), True),
        "1d": ("Last 24 hours", timedelta(days=1), True),
        "gt1h": ("Older than an hour", timedelta(hours=1), False),
        "gt1d": ("Older than a day", timedelta(days=1), False),
    }

    class AgeFilter(admin.SimpleListFilter):
        parameter_name = "age"

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            return [(key, label) for key, (label, _, _) in ages.items()]

        def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
            chosen = ages.get(self.value() or "")
            if chosen is None:
                return queryset
            _, age, recent = chosen
            cutoff = timezone.now() - age
            lookup = f"{field}__gte" if recent else f"{field}__lt"
            return queryset.filter(**{lookup: cutoff})

    AgeFilter.title = title
    return AgeFilter


def json_block(value: Any) -> SafeString:
    """JSON as an indented, escaped <pre> block."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


def action_confirmation(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    title: str,
    consequence: str,
) -> TemplateResponse | None:
    """The page that lists the selected rows and asks before the action runs; None once
    staff confirmed (the page posts the selection back with `post=yes`)."""
    if request.POST.get("post") == "yes":
        return None
    selected = list(queryset)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "consequence": consequence,
        "objects": [str(obj) for obj in selected[:CONFIRMATION_LISTED]],
        "not_listed": max(0, len(selected) - CONFIRMATION_LISTED),
        "selected": [str(obj.pk) for obj in selected],
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "opts": model_admin.model._meta,
        "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/ops/confirm_action.html", context)


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


def _is_staff(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_staff)


@admin.register(OperationsPage)
class OperationsPageAdmin(admin.ModelAdmin):
    """The last hour of orders, latency, errors, queues and dependencies, as charts,
    for every staff user (the changelist is the page; the model has no rows of its own)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_staff(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_staff(request) and obj is None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Operations: the last hour",
            "subtitle": None,
            "opts": self.model._meta,
            "page": operations_page_data(),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/ops/operations.html", context)


def _may_redrive(request: HttpRequest) -> bool:
    # Re-driving changes state: it needs the change permission a ReadOnlyAdmin hides.
    return bool(request.user.has_perm("core.change_deadletter"))


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "topic",
        "handler",
        "queue",
        "status",
        "attempts",
        "age",
        "available_at",
        "done_at",
        "last_error_excerpt",
    ]
    list_filter = ["status", "topic", "handler", "queue", created_age_filter()]
    search_fields = ["=id", "dedup_key", "topic", "handler", "request_id", "payload__order_id"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "topic",
        "handler",
        "queue",
        "status",
        "attempts",
        "dedup_key",
        "request_id",
        "payload_readable",
        "created_at",
        "available_at",
        "dispatched_at",
        "done_at",
        "last_error",
    )
    actions = ["redrive"]

    @admin.display(description="age")
    def age(self, message: OutboxMessage) -> str:
        return _age(message.created_at)

    @admin.display(description="last error")
    def last_error_excerpt(self, message: OutboxMessage) -> str:
        return message.last_error[:80]

    @admin.display(description="payload")
    def payload_readable(self, message: OutboxMessage) -> SafeString:
        return json_block(message.payload)

    def has_redrive_permission(self, request: HttpRequest) -> bool:
        return _may_redrive(request)

    @admin.action(description="Re-drive dead messages: handle them again", permissions=["redrive"])
    def redrive(
        self, request: HttpRequest, queryset: QuerySet[OutboxMessage]
    ) -> TemplateResponse | None:
        dead = queryset.filter(status=OutboxMessage.Status.DEAD)
        confirm = action_confirmation(
            self,
            request,
            queryset,
            action="redrive",
            title="Re-drive dead outbox messages?",
            consequence=(
                f"{dead.count()} of the selected messages are dead: each goes back to "
                "pending with a fresh attempt count and is handed to its queue again. "
                "Messages that are not dead are left as they are."
            ),
        )
        if confirm is not None:
            return confirm
        sent = sum(
            outbox_message_redrive(message_id=pk) for pk in dead.values_list("pk", flat=True)
        )
        skipped = queryset.count() - sent
        self.message_user(
            request,
            f"Re-drove {sent} message(s)" + (f"; {skipped} were not dead." if skipped else "."),
            messages.SUCCESS if sent else messages.WARNING,
        )
        return None


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "task_name",
        "outbox_message",
        "created_at",
        "redriven_at",
        "error_excerpt",
    ]
    list_filter = [
        "task_name",
        ("redriven_at", admin.EmptyFieldListFilter),
        "outbox_message__handler",
        created_age_filter(),
    ]
    list_select_related = ["outbox_message"]
    search_fields = ["=id", "task_name", "task_id", "error", "outbox_message__topic"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "task_name",
        "task_id",
        "outbox_message",
        "arguments",
        "outbox_payload",
        "error",
        "traceback_block",
        "created_at",
        "redriven_at",
    )
    actions = ["redrive"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not _may_redrive(request):
            actions.pop("redrive", None)
        return actions

    @admin.display(description="error")
    def error_excerpt(self, dead: DeadLetter) -> str:
        return dead.error[:80]

    @admin.display(description="arguments")
    def arguments(self, dead: DeadLetter) -> SafeString:
        return json_block({"args": dead.args, "kwargs": dead.kwargs})

    @admin.display(description="outbox payload")
    def outbox_payload(self, dead: DeadLetter) -> SafeString | str:
        message = dead.outbox_message
        return json_block(message.payload) if message is not None else "-"

    @admin.display(description="traceback")
    def traceback_block(self, dead: DeadLetter) -> SafeString:
        return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', dead.traceback)

    @admin.action(description="Re-drive: send the task again")
    def redrive(
        self, request: HttpRequest, queryset: QuerySet[DeadLetter]
    ) -> TemplateResponse | None:
        waiting = queryset.filter(redriven_at__isnull=True)
        confirm = action_confirmation(
            self,
            request,
            queryset,
            action="redrive",
            title="Re-drive dead letters?",
            consequence=(
                f"{waiting.count()} of the selected dead letters were not re-driven yet: "
                "each task is sent again (an outbox message goes back to pending and is "
                "handled again). Those re-driven before are left as they are."
            ),
        )
        if confirm is not None:
            return confirm
        sent = sum(
            dead_letter_redrive(dead_letter_id=pk) for pk in waiting.values_list("pk", flat=True)
        )
        skipped = queryset.count() - sent
        self.message_user(
            request,
            f"Re-drove {sent} task(s)"
            + (f"; {skipped} were re-driven before." if skipped else "."),
            messages.SUCCESS if sent else messages.WARNING,
        )
        return None


def _age(at: Any) -> str:
    seconds = int((timezone.now() - at).total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"
