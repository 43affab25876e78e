"""Order and payment admin: orders and payments are records. Staff move them only
through actions that call the same use cases as the API (flows.transitions for the
order transitions: ship captures, refund refunds, cancel asks warehouses to withdraw
and voids; flows.refund and flows.void for the payment actions)."""

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join
from django_fsm import can_proceed

from core.actors import Actor
from core.admin import ReadOnlyAdmin, ReadOnlyInline
from core.errors import DomainError
from core.money import money_format
from flows.refund import order_refund
from flows.transitions import order_transition_by_name
from flows.void import order_payments_void
from orders.models import Order, OrderLine, OrderStatusChange
from orders.states import STATUSES_USING_PAYMENT, TRANSITIONS
from payments.models import Payment, PaymentOperation
from payments.provider import payment_breaker_state
from payments.services.operations import VOIDABLE_STATUSES

AdminAction = Callable[["OrderAdmin", HttpRequest, "QuerySet[Order]"], None]


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = readonly_fields = (
        "sku",
        "name",
        "quantity",
        "unit_price_display",
        "line_total_display",
    )

    def get_queryset(self, request: HttpRequest) -> "QuerySet[OrderLine]":
        return super().get_queryset(request).select_related("order")

    @admin.display(description="unit price")
    def unit_price_display(self, line: OrderLine) -> str:
        return money_format(line.unit_price, line.order.currency)

    @admin.display(description="line total")
    def line_total_display(self, line: OrderLine) -> str:
        return money_format(line.line_total, line.order.currency)


class OrderStatusChangeInline(ReadOnlyInline):
    model = OrderStatusChange
    verbose_name = "status change"
    verbose_name_plural = "status history"
    fields = readonly_fields = (
        "created_at",
        "transition",
        "from_status",
        "to_status",
        "actor_label",
        "reason",
        "request_id",
    )


class PaymentAmountsMixin:
    """A payment's amounts in its currency, for lists and inlines."""

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, payment: Payment) -> str:
        return money_format(payment.amount, payment.currency)

    @admin.display(description="captured", ordering="amount_captured")
    def captured_display(self, payment: Payment) -> str:
        return money_format(payment.amount_captured, payment.currency)

    @admin.display(description="refunded", ordering="amount_refunded")
    def refunded_display(self, payment: Payment) -> str:
        return money_format(payment.amount_refunded, payment.currency)


class PaymentInline(PaymentAmountsMixin, ReadOnlyInline):
    model = Payment
    verbose_name = "payment attempt"
    fields = readonly_fields = (
        "created_at",
        "provider_payment_id",
        "status",
        "amount_display",
        "captured_display",
        "refunded_display",
        "decline_code",
    )


def _transition_action(transition: str) -> AdminAction:
    @admin.action(
        description=f"Transition selected orders: {transition}",
        permissions=["transition"],
    )
    def action(modeladmin: "OrderAdmin", request: HttpRequest, queryset: "QuerySet[Order]") -> None:
        modeladmin.transition_apply(request, queryset, transition)

    # The admin names an action after its function; one action per transition.
    action.__name__ = transition
    return action


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["number", "customer", "status", "total_display", "created_at"]
    list_filter = ["status", "created_at"]
    list_select_related = ["customer"]
    search_fields = ["number", "email"]
    date_hierarchy = "created_at"
    actions = [_transition_action(transition) for transition in TRANSITIONS]
    inlines = [OrderLineInline, PaymentInline, OrderStatusChangeInline]
    fieldsets = [
        (None, {"fields": ["number", "status", "available_transitions", "customer", "email"]}),
        ("Shipping", {"fields": ["shipping_address"]}),
        (
            "Amounts",
            {
                "fields": [
                    "subtotal_display",
                    "shipping_display",
                    "tax_display",
                    "total_display",
                ]
            },
        ),
        ("Dates", {"fields": ["reservation_expires_at", "created_at", "updated_at"]}),
        ("Payment provider calls", {"fields": ["payment_operations"]}),
    ]
    readonly_fields = [
        "number",
        "status",
        "available_transitions",
        "customer",
        "email",
        "shipping_address",
        "subtotal_display",
        "shipping_display",
        "tax_display",
        "total_display",
        "reservation_expires_at",
        "created_at",
        "updated_at",
        "payment_operations",
    ]

    # Orders are records: created by checkout, never deleted, and never edited as a
    # form. The protected status field moves only through the transition actions.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_transition_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orders.change_order")

    def transition_apply(
        self, request: HttpRequest, queryset: "QuerySet[Order]", transition: str
    ) -> None:
        """Run the transition on each selected order; report each outcome separately."""
        actor = Actor.from_request(request)
        for order_id, number in queryset.order_by("number").values_list("pk", "number"):
            try:
                order = order_transition_by_name(
                    order_id=order_id, transition=transition, actor=actor
                )
            except DomainError as error:
                self.message_user(request, f"{number}: {error.detail}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{number}: {transition} done, now {order.status}.", messages.SUCCESS
                )

    @admin.display(description="provider calls")
    def payment_operations(self, order: Order) -> str:
        operations = PaymentOperation.objects.filter(payment__order=order).order_by(
            "created_at", "pk"
        )
        if not operations:
            return "none"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td></tr>",
            (
                (
                    operation.created_at.isoformat(timespec="seconds"),
                    operation.kind,
                    money_format(operation.amount, order.currency),
                    operation.status,
                    operation.attempts,
                    operation.idempotency_key,
                    operation.error_code or "",
                )
                for operation in operations
            ),
        )
        return format_html(
            "<table><thead><tr><th>at</th><th>kind</th><th>amount</th><th>status</th>"
            "<th>attempts</th><th>idempotency key</th><th>error</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="available transitions")
    def available_transitions(self, order: Order) -> str:
        names = [name for name in TRANSITIONS if can_proceed(getattr(order, name))]
        return ", ".join(names) or "none"

    @admin.display(description="subtotal")
    def subtotal_display(self, order: Order) -> str:
        return money_format(order.subtotal_amount, order.currency)

    @admin.display(description="shipping")
    def shipping_display(self, order: Order) -> str:
        return money_format(order.shipping_amount, order.currency)

    @admin.display(description="tax")
    def tax_display(self, order: Order) -> str:
        return money_format(order.tax_amount, order.currency)

    @admin.display(description="total", ordering="total_amount")
    def total_display(self, order: Order) -> str:
        return money_format(order.total_amount, order.currency)


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
class PaymentAdmin(PaymentAmountsMixin, ReadOnlyAdmin):
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
            if payment.status not in (Payment.Status.CAPTURED, Payment.Status.REFUNDED):
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
            if payment.order.status in STATUSES_USING_PAYMENT:
                self.message_user(
                    request,
                    f"{label}: order {payment.order.status} still uses this authorization; "
                    "cancel the order instead.",
                    messages.ERROR,
                )
                continue
            try:
                order_payments_void(order_id=payment.order_id, actor=actor)
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
