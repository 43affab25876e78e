"""Payments admin: the record of every authorization attempt and every provider call.

The records are read-only. Money moves only through actions that call payments.services
like the API does: here "refund (full)" and "void authorization", on the order admin
the ship, refund and cancel transitions.
"""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from core.actors import Actor
from core.admin import ReadOnlyAdmin
from core.errors import DomainError
from core.money import money_format
from orders.admin import ReadOnlyInline
from payments.models import Payment, PaymentOperation, StripeEvent
from payments.provider import payment_breaker_state
from payments.services import order_refund, payments_void_for_order
from payments.services.voids import ORDER_STATUSES_USING_PAYMENT, VOIDABLE_STATUSES


class PaymentOperationInline(ReadOnlyInline):
    model = PaymentOperation
    verbose_name = "provider call"
    verbose_name_plural = "provider calls"
    fields = readonly_fields = (
        "created_at",
        "kind",
        "amount",
        "status",
        "attempts",
        "idempotency_key",
        "provider_object_id",
        "error_code",
        "error_message",
        "updated_at",
    )


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "order",
        "provider_payment_id",
        "status",
        "amount_display",
        "captured_display",
        "refunded_display",
        "decline_code",
        "created_at",
    ]
    list_filter = ["status", "provider", "currency", "created_at"]
    list_select_related = ["order"]
    search_fields = ["order__number", "provider_payment_id", "decline_code"]
    date_hierarchy = "created_at"
    exclude = ["client_secret"]
    inlines = [PaymentOperationInline]
    actions = ["refund_full", "void_authorization"]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The provider's circuit breaker, as every process sees it.
        extra_context = {
            **(extra_context or {}),
            "title": f"Payments — provider circuit breaker: {payment_breaker_state()}",
        }
        return super().changelist_view(request, extra_context)

    def has_money_permission(self, request: HttpRequest) -> bool:
        # The permission that lets staff take the order transitions that move money.
        return request.user.has_perm("orders.change_order")

    @admin.action(description="Refund (full): refund all that is left", permissions=["money"])
    def refund_full(self, request: HttpRequest, queryset: "QuerySet[Payment]") -> None:
        actor = Actor.from_request(request)  # the staff user and this request's id
        for payment in queryset.select_related("order").order_by("pk"):
            label = f"{payment.order.number} ({payment.provider_payment_id or payment.pk})"
            if payment.status != Payment.Status.CAPTURED:
                self.message_user(
                    request, f"{label}: nothing captured to refund.", messages.WARNING
                )
                continue
            try:
                order = order_refund(order_id=payment.order_id, amount=None, actor=actor)
            except DomainError as error:
                self.message_user(request, f"{label}: {error.detail}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{label}: refunded in full, order {order.status}.", messages.SUCCESS
                )

    @admin.action(description="Void authorization: release the held amount", permissions=["money"])
    def void_authorization(self, request: HttpRequest, queryset: "QuerySet[Payment]") -> None:
        actor = Actor.from_request(request)  # the staff user and this request's id
        for payment in queryset.select_related("order").order_by("pk"):
            label = f"{payment.order.number} ({payment.provider_payment_id or payment.pk})"
            if payment.status not in VOIDABLE_STATUSES:
                self.message_user(
                    request, f"{label}: no authorization to void ({payment.status}).", messages.INFO
                )
                continue
            if payment.order.status in ORDER_STATUSES_USING_PAYMENT:
                self.message_user(
                    request,
                    f"{label}: order {payment.order.status} still uses this authorization; "
                    "cancel the order instead.",
                    messages.ERROR,
                )
                continue
            try:
                payments_void_for_order(order_id=payment.order_id, actor=actor)
            except DomainError as error:
                self.message_user(request, f"{label}: {error.detail}", messages.ERROR)
                continue
            payment.refresh_from_db()
            if payment.status == Payment.Status.VOIDED:
                self.message_user(request, f"{label}: authorization voided.", messages.SUCCESS)
            else:
                self.message_user(
                    request,
                    f"{label}: the provider did not confirm the void; the reconciler will "
                    "retry it.",
                    messages.WARNING,
                )

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, payment: Payment) -> str:
        return money_format(payment.amount, payment.currency)

    @admin.display(description="captured", ordering="amount_captured")
    def captured_display(self, payment: Payment) -> str:
        return money_format(payment.amount_captured, payment.currency)

    @admin.display(description="refunded", ordering="amount_refunded")
    def refunded_display(self, payment: Payment) -> str:
        return money_format(payment.amount_refunded, payment.currency)


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "received_at", "processed_at", "error"]
    list_filter = ["type", "received_at"]
    search_fields = ["event_id", "type"]
    date_hierarchy = "received_at"
