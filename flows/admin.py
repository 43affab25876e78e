"""Order and payment admin: orders and payments are records. Staff move an order from
its page: a button for each transition the order can take now and the staff user may
take (access.policy, the table the API uses), each leading to a confirmation page with
a reason. Confirming runs the same use case as the API (flows.transitions; refunds with
an amount through flows.refund, as POST /orders/{id}/refund/ does), once per form: the
form carries an idempotency key that core.idempotency claims like an Idempotency-Key."""

import uuid
from datetime import UTC
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import SimpleListFilter
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django_fsm import can_proceed

from access.policy import staff_action_allowed
from access.roles import roles_of
from core.actors import Actor
from core.admin import ReadOnlyAdmin, ReadOnlyInline, action_confirmation
from core.errors import DomainError, RequestInProgress
from core.idempotency import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    IdempotencyContext,
    IdempotentResult,
    idempotent_execute,
)
from core.models import IdempotencyKey
from core.money import CURRENCY_DECIMALS, money_format
from flows.refund import order_refund
from flows.ship import SHIPPABLE_STATUSES
from flows.transitions import USE_CASE_BY_TRANSITION, order_transition_by_name
from flows.void import order_payments_void
from inventory.models import Warehouse
from orders.models import Order, OrderLine, OrderStatusChange, Return
from orders.states import STATUSES_USING_PAYMENT, TRANSITIONS
from payments.models import Payment, PaymentOperation
from payments.provider import payment_breaker_state
from payments.services.operations import VOIDABLE_STATUSES, refunds_in_flight_total

# What confirming each transition does, for the confirmation page.
WHAT_HAPPENS = {
    "confirm": "The order is confirmed as paid outside oms and goes on to routing.",
    "fail_payment": "The payment attempt is recorded as failed; the stock stays held "
    "until the reservation expires.",
    "retry_payment": "The customer may pay again while the stock is still held.",
    "expire": "The order expires: its stock is released and any authorization voided.",
    "cancel": "Warehouses are asked to withdraw, the stock is released and the payment's "
    "authorization voided; the customer is told.",
    "route": "The order is routed by hand (a warehouse without a fulfilment service).",
    "ship": "The authorized payment is captured at the provider, then the order ships and "
    "its stock leaves the warehouse; the customer is told.",
    "deliver": "The order is recorded as delivered to the customer.",
    "refund": "Money goes back to the customer at the provider: the amount below, or all "
    "that is left when the amount is blank (the order then moves to refunded).",
}


def order_transition_legal(order: Order, transition: str) -> bool:
    """Whether the order can take the transition now, as its use case sees it: the
    machine's own conditions, and ship also from confirmed (flows.ship routes first).
    Transitions no use case takes by name (a refunded return's) are never offered."""
    if transition not in USE_CASE_BY_TRANSITION:
        return False
    if transition == "ship" and order.status in SHIPPABLE_STATUSES:
        return True
    return can_proceed(getattr(order, transition))


def staff_may(request: HttpRequest, action: str) -> bool:
    """Whether the staff user may take a STAFF_ACTIONS action (one query, once a request)."""
    user = request.user
    if not (user.is_active and user.is_staff):
        return False
    roles = getattr(request, "_oms_roles", None)
    if roles is None:
        roles = roles_of(user)
        request._oms_roles = roles  # type: ignore[attr-defined]
    return staff_action_allowed(action, roles=roles)


def money_parse(text: str, currency: str) -> int:
    """Major units as typed ("12.34") to integer minor units (1234) in the currency's
    exponent, exactly; ValueError for anything else (more decimals than the currency has,
    not a number, not positive)."""
    decimals = CURRENCY_DECIMALS.get(currency.upper(), 2)
    try:
        amount = Decimal(text.strip().replace(",", ""))
    except InvalidOperation as error:
        raise ValueError("Enter an amount such as 12.34.") from error
    if not amount.is_finite():
        raise ValueError("Enter an amount such as 12.34.")
    if amount <= 0:
        raise ValueError("Enter an amount above zero.")
    minor = amount.scaleb(decimals)
    if minor != minor.to_integral_value():
        raise ValueError(f"{currency} has {decimals} decimal places at most.")
    return int(minor)


class OrderActionForm(forms.Form):
    reason = forms.CharField(
        max_length=OrderStatusChange._meta.get_field("reason").max_length,
        help_text="Recorded with the change, e.g. 'customer called to cancel'.",
    )
    # Rendered once with the page: submitting the same form twice acts once.
    idempotency_key = forms.CharField(
        widget=forms.HiddenInput, max_length=IDEMPOTENCY_KEY_MAX_LENGTH
    )


class OrderRefundForm(OrderActionForm):
    amount = forms.CharField(
        required=False,
        max_length=32,
        help_text="In major units, e.g. 12.34; blank refunds all that is left.",
    )
    field_order = ["amount", "reason", "idempotency_key"]

    def __init__(
        self,
        *args: Any,
        currency: str,
        refundable: int | None,
        resubmitted: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.refundable = refundable
        # A form submitted before is answered by its first outcome, not checked against
        # what is left after it.
        self.resubmitted = resubmitted

    def clean_amount(self) -> int | None:
        text = str(self.cleaned_data.get("amount") or "").strip()
        if not text:
            return None
        if self.refundable is None:
            raise forms.ValidationError(
                "Nothing was captured through the provider: leave the amount blank to "
                "record the refund."
            )
        try:
            amount = money_parse(text, self.currency)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from error
        if amount > self.refundable and not self.resubmitted:
            raise forms.ValidationError(
                f"At most {money_format(self.refundable, self.currency)} can be refunded."
            )
        return amount


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


class ReturnInline(ReadOnlyInline):
    """The order's returns (RMA); staff act on them through the returns API."""

    model = Return
    fields = readonly_fields = (
        "created_at",
        "status",
        "reason",
        "lines_display",
        "warehouse",
        "refund_display",
    )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Part of the order: whoever may view the order sees its returns.
        return bool(request.user.has_perm("orders.view_order"))

    def get_queryset(self, request: HttpRequest) -> "QuerySet[Return]":
        return (
            super()
            .get_queryset(request)
            .select_related("order", "warehouse")
            .prefetch_related("lines__order_line")
        )

    @admin.display(description="units (disposition)")
    def lines_display(self, return_request: Return) -> str:
        return ", ".join(
            f"{line.quantity} x {line.order_line.sku}"
            + (f" ({line.disposition})" if line.disposition else "")
            for line in return_request.lines.all()
        )

    @admin.display(description="refund")
    def refund_display(self, return_request: Return) -> str:
        if return_request.refund_amount is None:
            return "-"
        return money_format(return_request.refund_amount, return_request.order.currency)


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


class RoutedToWarehouseFilter(SimpleListFilter):
    title = "warehouse (routed to)"
    parameter_name = "warehouse"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(Warehouse.objects.order_by("code").values_list("code", "code"))

    def queryset(self, request: HttpRequest, queryset: "QuerySet[Order]") -> "QuerySet[Order]":
        if self.value() is None:
            return queryset
        # A subquery, not a join: an order asked of one warehouse twice is listed once.
        return queryset.filter(
            pk__in=Order.objects.filter(fulfilment_requests__warehouse__code=self.value()).values(
                "pk"
            )
        )


class PaymentStatusFilter(SimpleListFilter):
    title = "payment status"
    parameter_name = "payment_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*Payment.Status.choices, ("none", "no payment")]

    def queryset(self, request: HttpRequest, queryset: "QuerySet[Order]") -> "QuerySet[Order]":
        value = self.value()
        if value is None:
            return queryset
        # `payment_status` is OrderAdmin's annotation: the latest payment's status.
        if value == "none":
            return queryset.filter(**{"payment_status__isnull": True})
        return queryset.filter(**{"payment_status": value})


def _latest_payment_status() -> Subquery:
    return Subquery(
        Payment.objects.filter(order=OuterRef("pk"))
        .order_by("-created_at", "-pk")
        .values("status")[:1]
    )


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "number",
        "email",
        "status",
        "payment_status_display",
        "total_display",
        "created_at",
    ]
    list_filter = [
        "status",
        "created_at",
        RoutedToWarehouseFilter,
        PaymentStatusFilter,
    ]
    # Number and email in part; SKU and payment intent id exactly (indexed lookups).
    search_fields = ["number", "email", "=lines__sku", "=payments__provider_payment_id"]
    search_help_text = "Order number, email, SKU or payment intent id (pi_...)."
    date_hierarchy = "created_at"
    actions = None
    inlines = [OrderLineInline, PaymentInline, ReturnInline]
    fieldsets = [
        (None, {"fields": ["number", "status", "available_transitions", "customer", "email"]}),
        ("Shipping", {"fields": ["shipping_address_display"]}),
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
        ("History", {"fields": ["history"]}),
        ("Dates", {"fields": ["reservation_expires_at", "created_at", "updated_at"]}),
        ("Payment provider calls", {"fields": ["payment_operations"]}),
    ]
    readonly_fields = [
        "number",
        "status",
        "available_transitions",
        "customer",
        "email",
        "shipping_address_display",
        "subtotal_display",
        "shipping_display",
        "tax_display",
        "total_display",
        "history",
        "reservation_expires_at",
        "created_at",
        "updated_at",
        "payment_operations",
    ]

    # Orders are records: created by checkout, never deleted, and never edited as a
    # form. The protected status field moves only through the action pages.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> "QuerySet[Order]":
        return super().get_queryset(request).annotate(payment_status=_latest_payment_status())

    # -- the actions ------------------------------------------------------------------

    def has_order_action_permission(self, request: HttpRequest, transition: str) -> bool:
        return self.has_view_permission(request) and staff_may(request, f"order.{transition}")

    def order_actions(self, request: HttpRequest, order: Order) -> list[str]:
        """The transitions the order can take now that this user may take."""
        return [
            name
            for name in TRANSITIONS
            if order_transition_legal(order, name)
            and self.has_order_action_permission(request, name)
        ]

    def get_urls(self) -> list[URLPattern]:
        act = path(
            "<path:object_id>/act/<str:transition>/",
            self.admin_site.admin_view(self.order_action_view),
            name="orders_order_act",
        )
        return [act, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        order = self.get_object(request, unquote(object_id))
        actions = []
        if order is not None:
            actions = [
                (
                    name,
                    name.replace("_", " ").capitalize(),
                    reverse("admin:orders_order_act", args=[order.pk, name]),
                )
                for name in self.order_actions(request, order)
            ]
        extra_context = {**(extra_context or {}), "order_actions": actions}
        return super().change_view(request, object_id, form_url, extra_context)

    def order_action_view(
        self, request: HttpRequest, object_id: str, transition: str
    ) -> HttpResponse:
        """Confirm one transition with a reason; on POST run its use case once."""
        if transition not in USE_CASE_BY_TRANSITION:
            raise Http404("No such transition.")
        if not self.has_order_action_permission(request, transition):
            raise PermissionDenied
        order = self.get_object(request, unquote(object_id))
        if order is None:
            raise Http404("No such order.")
        change_url = reverse("admin:orders_order_change", args=[order.pk])
        refund = transition == "refund"
        payment = self._refundable_payment(order) if refund else None
        refundable = self._refundable(payment)
        data = request.POST if request.method == "POST" else None
        initial = {"idempotency_key": uuid.uuid4().hex}
        form: OrderActionForm
        if refund:
            resubmitted = (
                data is not None
                and IdempotencyKey.objects.filter(
                    user=Actor.from_request(request).require_user(),
                    key=str(data.get("idempotency_key", "")),
                ).exists()
            )
            form = OrderRefundForm(
                data,
                initial=initial,
                currency=order.currency,
                refundable=refundable,
                resubmitted=resubmitted,
            )
        else:
            form = OrderActionForm(data, initial=initial)
        if data is None and not order_transition_legal(order, transition):
            self.message_user(
                request, f"{order.number} cannot {transition} now ({order.status}).", messages.ERROR
            )
            return HttpResponseRedirect(change_url)
        if form.is_valid():
            if form.cleaned_data.get("amount") is not None and not staff_may(
                request, "order.refund_amount"
            ):
                raise PermissionDenied
            self._order_action_run(request, order, transition, form.cleaned_data)
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{transition.replace('_', ' ').capitalize()} order {order.number}?",
            "opts": self.opts,
            "original": order,
            "transition": transition,
            "what_happens": WHAT_HAPPENS[transition],
            "refundable": (
                money_format(refundable, order.currency) if refundable is not None else None
            ),
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/orders/order/action_confirm.html", context)

    @staticmethod
    def _refundable_payment(order: Order) -> Payment | None:
        return (
            Payment.objects.filter(order=order, status=Payment.Status.CAPTURED)
            .order_by("-created_at", "-pk")
            .first()
        )

    @staticmethod
    def _refundable(payment: Payment | None) -> int | None:
        """What is left to refund of the capture (None: nothing captured here)."""
        if payment is None:
            return None
        refundable = (
            payment.amount_captured - payment.amount_refunded - refunds_in_flight_total(payment)
        )
        return max(refundable, 0)

    def _order_action_run(
        self, request: HttpRequest, order: Order, transition: str, data: dict[str, Any]
    ) -> None:
        actor = Actor.from_request(request)
        reason: str = data["reason"]
        amount: int | None = data.get("amount")
        captured = transition == "refund" and self._refundable_payment(order) is not None

        def operation(context: IdempotencyContext) -> tuple[int, Any]:
            if captured:
                # Exactly as POST /orders/{id}/refund/: a retry re-sends the same refund.
                after = order_refund(
                    order_id=order.pk,
                    amount=amount,
                    actor=actor,
                    resume_operation_id=int(context.resource_id) if context.resource_id else None,
                    on_prepared=lambda refund_operation: context.checkpoint(
                        str(refund_operation.pk)
                    ),
                )
            else:
                after = order_transition_by_name(
                    order_id=order.pk, transition=transition, actor=actor, reason=reason
                )
            return 200, {"status": after.status}

        try:
            result: IdempotentResult = idempotent_execute(
                user=actor.require_user(),
                key=data["idempotency_key"],
                method="POST",
                path=request.path,
                payload={"transition": transition, "reason": reason, "amount": amount},
                operation=operation,
                atomic=False,
            )
        except RequestInProgress:
            self.message_user(
                request,
                f"{order.number}: this confirmation is already being carried out.",
                messages.WARNING,
            )
            return
        except DomainError as error:
            self.message_user(request, f"{order.number}: {error.detail}", messages.ERROR)
            return
        if result.replayed:
            self.message_user(
                request,
                f"{order.number}: this confirmation was already submitted; nothing was done again.",
                messages.WARNING,
            )
            return
        done = transition
        if transition == "refund":
            refunded = (
                "all that was left" if amount is None else money_format(amount, order.currency)
            )
            done = f"refunded {refunded}"
            # The refund use case records no reason: the admin log keeps who and why.
            self.log_change(request, order, f"Refunded {refunded}: {reason}")
        self.message_user(
            request, f"{order.number}: {done}, now {result.body['status']}.", messages.SUCCESS
        )

    # -- what the pages show ----------------------------------------------------------

    @admin.display(description="payment status", ordering="payment_status")
    def payment_status_display(self, order: Order) -> str:
        return getattr(order, "payment_status", None) or "—"

    @admin.display(description="shipping address")
    def shipping_address_display(self, order: Order) -> str:
        address = order.shipping_address if isinstance(order.shipping_address, dict) else {}
        city_line = " ".join(
            str(address[key]) for key in ("postal_code", "city") if address.get(key)
        )
        lines = [str(address[key]) for key in ("name", "line1", "line2") if address.get(key)]
        lines += [
            line for line in (city_line, address.get("region"), address.get("country")) if line
        ]
        return (
            format_html_join(
                mark_safe("<br>"),  # noqa: S308 (a constant)
                "{}",
                ((line,) for line in lines),
            )
            or "—"
        )

    @admin.display(description="history (oldest first)")
    def history(self, order: Order) -> str:
        """Status changes and refunds staff made here: when, what, who, why."""
        rows: list[tuple[Any, str, str, str]] = [
            (
                change.created_at,
                f"{change.from_status or '—'} → {change.to_status} ({change.transition})",
                change.actor_label,
                change.reason,
            )
            for change in OrderStatusChange.objects.filter(order=order).order_by("created_at", "pk")
        ]
        refunds = LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Order),
            object_id=str(order.pk),
            action_flag=CHANGE,
        ).select_related("user")
        for entry in refunds:
            what, _, why = entry.change_message.partition(": ")
            rows.append((entry.action_time, what, entry.user.get_username(), why))
        rows.sort(key=lambda row: row[0])
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), what, who, why)
                for when, what, who, why in rows
            ),
        )
        return format_html(
            '<table class="order-history"><thead><tr><th>when (UTC)</th><th>what</th>'
            "<th>who</th><th>why</th></tr></thead><tbody>{}</tbody></table>",
            body,
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
        names = [name for name in TRANSITIONS if order_transition_legal(order, name)]
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
        # Who may refund an order in full may refund or void its payment (access.policy).
        return staff_may(request, "order.refund")

    @admin.action(description="Refund (full): refund all that is left", permissions=["money"])
    def refund_full(
        self, request: HttpRequest, queryset: "QuerySet[Payment]"
    ) -> TemplateResponse | None:
        confirm = action_confirmation(
            self,
            request,
            queryset,
            action="refund_full",
            title="Refund these payments in full?",
            consequence=(
                "Each captured payment's order is refunded all that is left, through the "
                "provider, once; payments with nothing captured are skipped."
            ),
        )
        if confirm is not None:
            return confirm
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
        return None

    @admin.action(description="Void authorization: release the held amount", permissions=["money"])
    def void_authorization(
        self, request: HttpRequest, queryset: "QuerySet[Payment]"
    ) -> TemplateResponse | None:
        confirm = action_confirmation(
            self,
            request,
            queryset,
            action="void_authorization",
            title="Void these authorizations?",
            consequence=(
                "Each authorization that no open order still uses is released at the "
                "provider; the customer's held amount is freed."
            ),
        )
        if confirm is not None:
            return confirm
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
        return None
