"""Order and payment admin: orders and payments are records. Staff move an order from
its page: a button for each transition the order can take now and the staff user may
take (access.policy, the table the API uses), each leading to a confirmation page with
a reason. Confirming runs the same use case as the API (flows.transitions; refunds with
an amount through flows.refund, as POST /orders/{id}/refund/ does), once per form: the
form carries an idempotency key that core.idempotency claims like an Idempotency-Key.
"Cancel rest" (a partially shipped order: flows.cancel.order_cancel_rest, as POST
/orders/{id}/cancel-rest/ does) is offered the same way to whom that endpoint admits.
Returns are handled the same way: open one, then authorize, reject, cancel, receive
(restock or dispose, line by line) and refund it through flows.returns, each offered to
the groups the returns API admits. A refund by line refunds units the customer keeps
(a goodwill refund) at the returns' rule (orders.returns.units_refund_amount) through
flows.refund."""

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC
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
from core.money import money_format, money_parse
from flows.cancel import order_cancel_rest
from flows.refund import REFUNDABLE_STATUSES, order_refund
from flows.returns import (
    ReturnLineRequest,
    return_authorize,
    return_cancel,
    return_open,
    return_receive,
    return_refund,
    return_reject,
)
from flows.ship import SHIPPABLE_STATUSES
from flows.transitions import USE_CASE_BY_TRANSITION, order_transition_by_name
from flows.void import order_payments_void, payment_void_unused
from inventory.models import Warehouse
from orders.models import (
    Order,
    OrderLine,
    OrderStatusChange,
    Return,
    ReturnLine,
    ReturnStatusChange,
)
from orders.returns import return_refund_amount, units_refund_amount
from orders.states import (
    RETURNABLE_STATUSES,
    STATUSES_USING_PAYMENT,
    TRANSITIONS,
    OrderStatus,
    ReturnStatus,
)
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
    "cancel_rest": "Each warehouse is asked to withdraw what has not shipped; the stock held "
    "for it is released, the units that shipped stay captured and the rest of the "
    "authorization is released at the provider; the order ships with what left and the "
    "customer is told what will not ship.",
}

# Order actions that are not a transition of the order machine, with their use case.
ORDER_ACTIONS_BEYOND_TRANSITIONS: dict[str, Callable[..., Order]] = {
    "cancel_rest": order_cancel_rest,
}


def order_transition_legal(order: Order, transition: str) -> bool:
    """Whether the order can take the transition now, as its use case sees it: the
    machine's own conditions, and ship also from confirmed (flows.ship routes first).
    Transitions no use case takes by name (a refunded return's) are never offered.
    cancel_rest (not a transition: the order ships with what left) needs a partially
    shipped order."""
    if transition == "cancel_rest":
        return order.status == OrderStatus.PARTIALLY_SHIPPED
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


RETURN_WHAT_HAPPENS = {
    "authorize": "The customer may send the units back; they are emailed what to send.",
    "reject": "The return is refused; its units may be returned again.",
    "cancel": "The return is withdrawn; its units may be returned again.",
    "receive": "The units arrived: each line is restocked (back on the shelf of the "
    "warehouse below, or the one it shipped from) or disposed of.",
    "refund": "Money goes back to the customer at the provider: the return's units at "
    "their unit prices with their share of the tax (and the shipping with the order's "
    "last unit), never more than is left of the capture.",
}
# The return's status once each action is done (a resubmitted form finds it so).
RETURN_ACTION_STATUS = {
    "authorize": ReturnStatus.AUTHORIZED,
    "reject": ReturnStatus.REJECTED,
    "cancel": ReturnStatus.CANCELLED,
    "receive": ReturnStatus.RECEIVED,
    "refund": ReturnStatus.REFUNDED,
}
REASON_MAX_LENGTH = 500  # a return's reason, as the returns API takes it


class IdempotencyKeyForm(forms.Form):
    idempotency_key = forms.CharField(
        widget=forms.HiddenInput, max_length=IDEMPOTENCY_KEY_MAX_LENGTH
    )


class ReturnReasonForm(IdempotencyKeyForm):
    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH,
        help_text="Recorded with the return, e.g. 'arrived damaged'.",
    )
    field_order = ["reason", "idempotency_key"]


def _quantity_fields(form: forms.Form, units: Sequence[tuple[OrderLine, int]], what: str) -> None:
    """One quantity field per order line (named by its id), at most `units` each when
    `what` is "refund"; a return's quantities are checked by its use case."""
    for line, available in units:
        form.fields[f"line_{line.pk}"] = forms.IntegerField(
            label=f"{line.sku} ({line.name})",
            min_value=0,
            max_value=available if what == "refund" else None,
            required=False,
            initial=0,
            help_text=f"{available} of {line.quantity} may be {what}ed.",
        )


def _quantities(
    form: forms.Form, units: Sequence[tuple[OrderLine, int]]
) -> list[tuple[OrderLine, int]]:
    chosen = [(line, form.cleaned_data.get(f"line_{line.pk}") or 0) for line, _ in units]
    return [(line, quantity) for line, quantity in chosen if quantity > 0]


class ReturnOpenForm(ReturnReasonForm):
    """Units to return per line (lines with returnable units) and why."""

    def __init__(self, *args: Any, units: Sequence[tuple[OrderLine, int]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.units = units
        _quantity_fields(self, units, "return")
        self.order_fields([*(f"line_{line.pk}" for line, _ in units), "reason"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.errors and not _quantities(self, self.units):
            raise forms.ValidationError("Enter a quantity to return for at least one line.")
        return cleaned

    def lines(self) -> list[ReturnLineRequest]:
        return [
            ReturnLineRequest(line.sku, quantity)
            for line, quantity in _quantities(self, self.units)
        ]


class ReturnReceiveForm(IdempotencyKeyForm):
    """Per return line: restock or dispose; where the units arrived."""

    def __init__(self, *args: Any, return_lines: Sequence[ReturnLine], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.return_lines = return_lines
        for line in return_lines:
            self.fields[f"disposition_{line.pk}"] = forms.ChoiceField(
                label=f"{line.quantity} x {line.order_line.sku}",
                choices=Return.Disposition.choices,
                initial=Return.Disposition.RESTOCK,
            )
        self.fields["warehouse"] = forms.ChoiceField(
            required=False,
            choices=[
                ("", "where each line shipped from"),
                *Warehouse.objects.order_by("code").values_list("code", "code"),
            ],
            help_text="Where the units arrived (restocked lines go back on its shelves).",
        )

    def dispositions(self) -> dict[str, str]:
        return {
            line.order_line.sku: self.cleaned_data[f"disposition_{line.pk}"]
            for line in self.return_lines
        }


class RefundLinesForm(OrderActionForm):
    """Units of each line to refund although the customer keeps them (a goodwill refund,
    e.g. damaged goods): at most the units not already in a return."""

    def __init__(self, *args: Any, units: Sequence[tuple[OrderLine, int]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.units = units
        _quantity_fields(self, units, "refund")
        self.order_fields([*(f"line_{line.pk}" for line, _ in units), "reason"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.errors and not _quantities(self, self.units):
            raise forms.ValidationError("Enter a quantity to refund for at least one line.")
        return cleaned

    def lines(self) -> list[tuple[OrderLine, int]]:
        return _quantities(self, self.units)


def order_lines_refund_amount(order: Order, lines: Sequence[tuple[OrderLine, int]]) -> int:
    """What refunding these units comes to: the returns' rule (unit prices and the
    units' share of the order's tax), without shipping: the order still reached them."""
    return units_refund_amount(
        order=order, value=sum(line.unit_price * quantity for line, quantity in lines)
    )


def _returnable_units(order: Order) -> list[tuple[OrderLine, int]]:
    """The order's lines with units not in a return yet, with how many."""
    return [
        (line, line.quantity - line.returned_quantity)
        for line in order.lines.order_by("pk")
        if line.quantity > line.returned_quantity
    ]


def return_action_legal(return_request: Return, action: str) -> bool:
    return action in RETURN_ACTION_STATUS and can_proceed(getattr(return_request, action))


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
    """The order's returns (RMA); staff act on them from the order page's return actions."""

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
        # `payment_status` is OrderAdmin's annotation: its current payment's status (else
        # the latest one's).
        if value == "none":
            return queryset.filter(**{"payment_status__isnull": True})
        return queryset.filter(**{"payment_status": value})


def _latest_payment_status() -> Subquery:
    return Subquery(
        Payment.objects.filter(order=OuterRef("pk"))
        .order_by("-is_current", "-created_at", "-pk")
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
            for name in (*TRANSITIONS, *ORDER_ACTIONS_BEYOND_TRANSITIONS)
            if order_transition_legal(order, name)
            and self.has_order_action_permission(request, name)
        ]

    def get_urls(self) -> list[URLPattern]:
        act = path(
            "<path:object_id>/act/<str:transition>/",
            self.admin_site.admin_view(self.order_action_view),
            name="orders_order_act",
        )
        return_open_url = path(
            "<path:object_id>/returns/open/",
            self.admin_site.admin_view(self.return_open_view),
            name="orders_order_return_open",
        )
        return_act = path(
            "<path:object_id>/returns/<uuid:return_id>/<str:action>/",
            self.admin_site.admin_view(self.return_action_view),
            name="orders_order_return_act",
        )
        refund_lines = path(
            "<path:object_id>/refund-lines/",
            self.admin_site.admin_view(self.refund_lines_view),
            name="orders_order_refund_lines",
        )
        return [return_open_url, return_act, refund_lines, act, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        order = self.get_object(request, unquote(object_id))
        actions = []
        forms_offered: list[tuple[str, str, str]] = []
        returns: list[tuple[Return, list[tuple[str, str, str]]]] = []
        if order is not None:
            actions = [
                (
                    name,
                    name.replace("_", " ").capitalize(),
                    reverse("admin:orders_order_act", args=[order.pk, name]),
                )
                for name in self.order_actions(request, order)
            ]
            forms_offered = self.order_forms(request, order)
            returns = [
                (
                    return_request,
                    [
                        (
                            action,
                            action.capitalize(),
                            reverse(
                                "admin:orders_order_return_act",
                                args=[order.pk, return_request.pk, action],
                            ),
                        )
                        for action in self.return_actions(request, return_request)
                    ],
                )
                for return_request in order.returns.order_by("created_at", "pk")
            ]
        extra_context = {
            **(extra_context or {}),
            "order_actions": actions,
            "order_forms": forms_offered,
            "return_actions": returns,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def order_forms(self, request: HttpRequest, order: Order) -> list[tuple[str, str, str]]:
        """Open a return, refund by line: when the order takes them and the user may.
        (Two queries whatever the order's status: a page's cost does not depend on it.)"""
        offered = []
        units = _returnable_units(order)
        captured = self._refundable_payment(order) is not None
        if (
            order.status in RETURNABLE_STATUSES
            and units
            and self.has_staff_action_permission(request, "return.open")
        ):
            url = reverse("admin:orders_order_return_open", args=[order.pk])
            offered.append(("return_open", "Open a return", url))
        if (
            order.status in REFUNDABLE_STATUSES
            and units
            and captured
            and self.has_staff_action_permission(request, "order.refund_lines")
        ):
            url = reverse("admin:orders_order_refund_lines", args=[order.pk])
            offered.append(("refund_lines", "Refund by line", url))
        return offered

    def return_actions(self, request: HttpRequest, return_request: Return) -> list[str]:
        """The actions the return can take now that this user may take."""
        return [
            action
            for action in RETURN_ACTION_STATUS
            if return_action_legal(return_request, action)
            and self.has_staff_action_permission(request, f"return.{action}")
        ]

    def has_staff_action_permission(self, request: HttpRequest, action: str) -> bool:
        return self.has_view_permission(request) and staff_may(request, action)

    def order_action_view(
        self, request: HttpRequest, object_id: str, transition: str
    ) -> HttpResponse:
        """Confirm one transition (or cancel_rest) with a reason; on POST run its use case
        once."""
        if transition not in USE_CASE_BY_TRANSITION | ORDER_ACTIONS_BEYOND_TRANSITIONS:
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
            elif transition in ORDER_ACTIONS_BEYOND_TRANSITIONS:
                after = ORDER_ACTIONS_BEYOND_TRANSITIONS[transition](
                    order_id=order.pk, actor=actor, reason=reason
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
        done = "cancelled the unshipped rest" if transition == "cancel_rest" else transition
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

    # -- returns and refunds by line --------------------------------------------------

    def _order_or_404(self, request: HttpRequest, object_id: str) -> Order:
        order = self.get_object(request, unquote(object_id))
        if order is None:
            raise Http404("No such order.")
        return order

    def _form_page(
        self,
        request: HttpRequest,
        order: Order,
        *,
        title: str,
        step: str,
        what_happens: str,
        form: forms.Form,
        amount: str | None = None,
        confirming: bool = False,
        summary: Sequence[str] = (),
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "original": order,
            "step": step,
            "what_happens": what_happens,
            "amount": amount,
            "confirming": confirming,
            "summary": summary,
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/orders/order/form_confirm.html", context)

    def _run_once(
        self,
        request: HttpRequest,
        order: Order,
        *,
        key: str,
        payload: dict[str, Any],
        operation: Callable[[IdempotencyContext], tuple[int, Any]],
    ) -> IdempotentResult | None:
        """Run the operation once for the form's key; None (and a message) when it did
        nothing now: in progress, refused by its use case, or submitted before."""
        actor = Actor.from_request(request)
        try:
            result: IdempotentResult = idempotent_execute(
                user=actor.require_user(),
                key=key,
                method="POST",
                path=request.path,
                payload=payload,
                operation=operation,
                atomic=False,
            )
        except RequestInProgress:
            self.message_user(
                request,
                f"{order.number}: this confirmation is already being carried out.",
                messages.WARNING,
            )
            return None
        except DomainError as error:
            self.message_user(request, f"{order.number}: {error.detail}", messages.ERROR)
            return None
        if result.replayed:
            self.message_user(
                request,
                f"{order.number}: this confirmation was already submitted; nothing was done again.",
                messages.WARNING,
            )
            return None
        return result

    @staticmethod
    def _resubmitted(request: HttpRequest, data: Any) -> bool:
        """Whether this form's idempotency key was submitted before."""
        return data is not None and (
            IdempotencyKey.objects.filter(
                user=Actor.from_request(request).require_user(),
                key=str(data.get("idempotency_key", "")),
            ).exists()
        )

    def return_open_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Open a return (flows.returns.return_open, as POST /orders/{id}/returns/)."""
        if not self.has_staff_action_permission(request, "return.open"):
            raise PermissionDenied
        order = self._order_or_404(request, object_id)
        change_url = reverse("admin:orders_order_change", args=[order.pk])
        units = _returnable_units(order)
        data = request.POST if request.method == "POST" else None
        if self._resubmitted(request, data):
            # Answered by its first outcome: the units it returned are no longer left.
            units = [(line, line.quantity) for line in order.lines.order_by("pk")]
        if data is None and (order.status not in RETURNABLE_STATUSES or not units):
            self.message_user(
                request, f"{order.number} has no units to return ({order.status}).", messages.ERROR
            )
            return HttpResponseRedirect(change_url)
        form = ReturnOpenForm(data, initial={"idempotency_key": uuid.uuid4().hex}, units=units)
        if not form.is_valid():
            return self._form_page(
                request,
                order,
                title=f"Open a return of order {order.number}?",
                step="open a return",
                what_happens="The units count as returned on their lines; the return waits "
                "for authorization (at once within the return window).",
                form=form,
            )
        actor = Actor.from_request(request)
        lines = form.lines()
        reason: str = form.cleaned_data["reason"]

        def operation(context: IdempotencyContext) -> tuple[int, Any]:
            return_id = context.resource_id
            if not return_id:
                opened = return_open(
                    order_id=order.pk,
                    lines=lines,
                    reason=reason,
                    actor=actor,
                    on_created=lambda created: context.checkpoint(str(created.pk)),
                )
                return_id = str(opened.pk)
            return 201, {"id": return_id, "status": Return.objects.get(pk=return_id).status}

        result = self._run_once(
            request,
            order,
            key=form.cleaned_data["idempotency_key"],
            payload={
                "lines": [{"sku": line.sku, "quantity": line.quantity} for line in lines],
                "reason": reason,
            },
            operation=operation,
        )
        if result is not None:
            self.message_user(
                request,
                f"{order.number}: opened return {result.body['id'][:8]}, now "
                f"{result.body['status']}.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(change_url)

    def return_action_view(
        self, request: HttpRequest, object_id: str, return_id: uuid.UUID, action: str
    ) -> HttpResponse:
        """Authorize, reject, cancel, receive or refund one return of the order through
        its use case in flows.returns, as POST /orders/{id}/returns/{return_id}/<action>/."""
        if action not in RETURN_ACTION_STATUS:
            raise Http404("No such return action.")
        if not self.has_staff_action_permission(request, f"return.{action}"):
            raise PermissionDenied
        order = self._order_or_404(request, object_id)
        return_request = Return.objects.filter(order=order, pk=return_id).first()
        if return_request is None:
            raise Http404("No such return.")
        change_url = reverse("admin:orders_order_change", args=[order.pk])
        short = str(return_request.pk)[:8]
        data = request.POST if request.method == "POST" else None
        if data is None and not return_action_legal(return_request, action):
            self.message_user(
                request,
                f"{order.number}: return {short} cannot {action} now ({return_request.status}).",
                messages.ERROR,
            )
            return HttpResponseRedirect(change_url)
        initial = {"idempotency_key": uuid.uuid4().hex}
        form: IdempotencyKeyForm
        if action == "receive":
            form = ReturnReceiveForm(
                data,
                initial=initial,
                return_lines=list(return_request.lines.select_related("order_line").order_by("pk")),
            )
        else:
            form = ReturnReasonForm(data, initial=initial)
        if not form.is_valid():
            amount = None
            if action == "refund" and return_request.status == ReturnStatus.RECEIVED:
                amount = money_format(
                    return_refund_amount(order=order, return_request=return_request),
                    order.currency,
                )
            return self._form_page(
                request,
                order,
                title=f"{action.capitalize()} return {short} of order {order.number}?",
                step=f"{action} return {short}",
                what_happens=RETURN_WHAT_HAPPENS[action],
                form=form,
                amount=amount,
            )
        actor = Actor.from_request(request)
        reason: str = form.cleaned_data.get("reason", "")
        payload: dict[str, Any] = {"action": action, "reason": reason}
        perform: Callable[[], Return]
        if isinstance(form, ReturnReceiveForm):
            dispositions = form.dispositions()
            warehouse_code: str = form.cleaned_data["warehouse"]
            payload.update(dispositions=dispositions, warehouse=warehouse_code)

            def perform() -> Return:
                return return_receive(
                    order_id=order.pk,
                    return_id=return_id,
                    dispositions=dispositions,
                    warehouse_code=warehouse_code,
                    actor=actor,
                )
        elif action == "refund":

            def perform() -> Return:
                return return_refund(order_id=order.pk, return_id=return_id, actor=actor)
        else:
            use_case = {
                "authorize": return_authorize,
                "reject": return_reject,
                "cancel": return_cancel,
            }[action]

            def perform() -> Return:
                return use_case(order_id=order.pk, return_id=return_id, actor=actor, reason=reason)

        def operation(context: IdempotencyContext) -> tuple[int, Any]:
            # A retry after the action committed but before its outcome was stored finds
            # the return done (as the returns API does).
            done = (
                context.resource_id
                and Return.objects.get(pk=return_id).status == RETURN_ACTION_STATUS[action]
            )
            if not done:
                context.checkpoint(str(return_id))
                perform()
            after = Return.objects.get(pk=return_id)
            return 200, {"status": after.status, "refund_amount": after.refund_amount}

        result = self._run_once(
            request,
            order,
            key=form.cleaned_data["idempotency_key"],
            payload=payload,
            operation=operation,
        )
        if result is None:
            return HttpResponseRedirect(change_url)
        done = action
        if action == "refund":
            refunded = money_format(result.body["refund_amount"] or 0, order.currency)
            done = f"refunded {refunded}"
            # The refund use case records no reason: the admin log keeps who and why.
            self.log_change(request, order, f"Refunded return {short} ({refunded}): {reason}")
        self.message_user(
            request,
            f"{order.number}: return {short}: {done}, now {result.body['status']}.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(change_url)

    def refund_lines_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Refund units the customer keeps, by line, at the returns' rule; the amount is
        shown on a confirmation step, then refunded through flows.refund once."""
        if not self.has_staff_action_permission(request, "order.refund_lines"):
            raise PermissionDenied
        order = self._order_or_404(request, object_id)
        change_url = reverse("admin:orders_order_change", args=[order.pk])
        payment = self._refundable_payment(order)
        units = _returnable_units(order)
        data = request.POST if request.method == "POST" else None
        if data is None and (
            order.status not in REFUNDABLE_STATUSES or payment is None or not units
        ):
            self.message_user(
                request,
                f"{order.number} takes no refund by line ({order.status}).",
                messages.ERROR,
            )
            return HttpResponseRedirect(change_url)
        form = RefundLinesForm(data, initial={"idempotency_key": uuid.uuid4().hex}, units=units)
        title = f"Refund order {order.number} by line?"
        what_happens = (
            "Money goes back to the customer at the provider for the units below, which "
            "they keep: their unit prices and their share of the order's tax."
        )
        if not form.is_valid():
            return self._form_page(
                request,
                order,
                title=title,
                step="refund by line",
                what_happens=what_happens,
                form=form,
            )
        lines = form.lines()
        amount = order_lines_refund_amount(order, lines)
        refundable = self._refundable(payment)
        if refundable is not None and amount > refundable and not self._resubmitted(request, data):
            form.add_error(
                None,
                f"{money_format(amount, order.currency)} is more than the "
                f"{money_format(refundable, order.currency)} left to refund.",
            )
        if "_confirm" not in request.POST or form.errors:
            # The confirmation step: the amount these units come to.
            return self._form_page(
                request,
                order,
                title=title,
                step="refund by line",
                what_happens=what_happens,
                form=form,
                amount=money_format(amount, order.currency),
                confirming=not form.errors,
                summary=[
                    *(f"{quantity} x {line.sku} ({line.name})" for line, quantity in lines),
                    f"Reason: {form.cleaned_data['reason']}",
                ],
            )
        actor = Actor.from_request(request)
        reason: str = form.cleaned_data["reason"]

        def operation(context: IdempotencyContext) -> tuple[int, Any]:
            # Exactly as POST /orders/{id}/refund/ with this amount.
            after = order_refund(
                order_id=order.pk,
                amount=amount,
                actor=actor,
                resume_operation_id=int(context.resource_id) if context.resource_id else None,
                on_prepared=lambda refund_operation: context.checkpoint(str(refund_operation.pk)),
            )
            return 200, {"status": after.status}

        units_text = ", ".join(f"{quantity} x {line.sku}" for line, quantity in lines)
        result = self._run_once(
            request,
            order,
            key=form.cleaned_data["idempotency_key"],
            payload={
                "lines": {line.sku: quantity for line, quantity in lines},
                "amount": amount,
                "reason": reason,
            },
            operation=operation,
        )
        if result is not None:
            refunded = money_format(amount, order.currency)
            self.log_change(request, order, f"Refunded {refunded} for {units_text}: {reason}")
            self.message_user(
                request,
                f"{order.number}: refunded {refunded} for {units_text}, now "
                f"{result.body['status']}.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(change_url)

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
        """Status changes (the order's and its returns') and refunds staff made here:
        when, what, who, why."""
        rows: list[tuple[Any, str, str, str]] = [
            (
                change.created_at,
                f"{change.from_status or '—'} → {change.to_status} ({change.transition})",
                change.actor_label,
                change.reason,
            )
            for change in OrderStatusChange.objects.filter(order=order).order_by("created_at", "pk")
        ]
        rows += [
            (
                change.created_at,
                f"return {str(change.return_request_id)[:8]}: "
                f"{change.from_status or '—'} → {change.to_status} ({change.transition})",
                change.actor_label,
                change.reason,
            )
            for change in ReturnStatusChange.objects.filter(return_request__order=order)
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
        "is_current",
        "amount_display",
        "captured_display",
        "refunded_display",
        "decline_code",
        "order_edit",
        "created_at",
    ]
    list_filter = ["status", "is_current", "provider", "currency", "created_at"]
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
            if payment.is_current and payment.order.status in STATUSES_USING_PAYMENT:
                self.message_user(
                    request,
                    f"{label}: order {payment.order.status} still uses this authorization; "
                    "cancel the order instead.",
                    messages.ERROR,
                )
                continue
            try:
                if payment.is_current:
                    order_payments_void(order_id=payment.order_id, actor=actor)
                else:
                    # An order edit replaced it, or took it and did not use it (an edit
                    # still proposed keeps its own: flows.void decides).
                    payment_void_unused(payment_id=payment.pk, actor=actor)
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
