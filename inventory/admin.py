"""Inventory admin. Stock counters change only through a receipt or an adjustment with a
reason (inventory.services.stock_adjust, as POST /stock/adjustments/ does), offered to
the roles access.policy lets adjust stock."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from access.policy import staff_action_allowed
from access.roles import roles_of
from core.actors import Actor
from core.admin import ReadOnlyAdmin
from core.errors import DomainError
from core.money import money_format
from inventory.api.serializers import MAX_ADJUSTMENT
from inventory.models import (
    BackorderClaim,
    Product,
    Reservation,
    StockItem,
    StockMovement,
    Warehouse,
)
from inventory.services import stock_adjust


@admin.register(Warehouse)
class WarehouseAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "region", "priority", "is_active", "created_at"]
    list_filter = ["is_active", "region"]
    search_fields = ["code", "name", "region"]
    # A fulfilment URL typed without a scheme is taken as https.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


class ProductAdminForm(forms.ModelForm):
    class Meta:
        model = Product
        fields = [
            "sku",
            "name",
            "price",
            "currency",
            "is_active",
            "low_stock_threshold",
            "backorder_limit",
        ]
        help_texts = {
            "backorder_limit": "Units checkouts may take beyond the stock, to wait for a "
            "receipt (0: no backorders).",
        }

    def clean_backorder_limit(self) -> int:
        limit = int(self.cleaned_data["backorder_limit"])
        backordered = self.instance.backordered if self.instance.pk else 0
        if limit < backordered:
            raise forms.ValidationError(
                f"{backordered} units are on backorder now; the limit cannot go below that."
            )
        return limit

    def clean_currency(self) -> str:
        currency = str(self.cleaned_data["currency"]).upper()
        if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
            raise forms.ValidationError("Use a three-letter ISO 4217 code, e.g. EUR.")
        return currency


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductAdminForm
    list_display = [
        "sku",
        "name",
        "price_display",
        "is_active",
        "low_stock_threshold",
        "backorder_limit",
        "backordered",
        "created_at",
    ]
    list_filter = ["is_active", "currency"]
    search_fields = ["sku", "name"]

    @admin.display(description="price", ordering="price")
    def price_display(self, product: Product) -> str:
        return money_format(product.price, product.currency)


class StockAdjustmentForm(forms.Form):
    quantity = forms.IntegerField(
        min_value=-MAX_ADJUSTMENT,
        max_value=MAX_ADJUSTMENT,
        help_text="Units to add (positive) or remove (negative) from on hand.",
    )
    reason = forms.CharField(
        max_length=StockMovement._meta.get_field("reason").max_length,
        help_text="Recorded on the stock movement, e.g. 'cycle count 2024-05'.",
    )

    def clean_quantity(self) -> int:
        quantity = int(self.cleaned_data["quantity"])
        if quantity == 0:
            raise forms.ValidationError("Must not be zero.")
        return quantity


class StockReceiptForm(forms.Form):
    product = forms.ModelChoiceField(queryset=Product.objects.order_by("sku"), to_field_name="sku")
    warehouse = forms.ModelChoiceField(
        queryset=Warehouse.objects.order_by("code"), to_field_name="code"
    )
    quantity = forms.IntegerField(
        min_value=1, max_value=MAX_ADJUSTMENT, help_text="Units that arrived."
    )
    reason = forms.CharField(
        max_length=StockMovement._meta.get_field("reason").max_length,
        help_text="Recorded on the receipt, e.g. 'delivery note 4711'.",
    )


@admin.register(StockItem)
class StockItemAdmin(ReadOnlyAdmin):
    """Counters are read-only; staff change on_hand through the adjustment view."""

    list_display = [
        "product",
        "warehouse",
        "bucket",
        "on_hand",
        "reserved",
        "available",
        "updated_at",
    ]
    list_filter = ["warehouse"]
    list_select_related = ["product", "warehouse"]
    search_fields = ["product__sku", "product__name", "warehouse__code"]
    fields = readonly_fields = (
        "product",
        "warehouse",
        "bucket",
        "on_hand",
        "reserved",
        "available",
        "movements_link",
        "created_at",
        "updated_at",
    )

    @admin.display(description="available")
    def available(self, stock_item: StockItem) -> int:
        return stock_item.available

    @admin.display(description="ledger")
    def movements_link(self, stock_item: StockItem) -> str:
        url = reverse("admin:inventory_stockmovement_changelist")
        return format_html(
            '<a href="{}?stock_item__id__exact={}">Stock movements</a>', url, stock_item.pk
        )

    change_list_template = "admin/inventory/stockitem/change_list.html"

    def has_adjust_permission(self, request: HttpRequest) -> bool:
        """Receive and adjust: whom the API lets POST /stock/adjustments/."""
        user = request.user
        return bool(
            user.is_active
            and user.is_staff
            and staff_action_allowed("stock.adjust", roles=roles_of(user))
        )

    def get_urls(self) -> list[URLPattern]:
        receive = path(
            "receive/",
            self.admin_site.admin_view(self.receive_view),
            name="inventory_stockitem_receive",
        )
        adjust = path(
            "<path:object_id>/adjust/",
            self.admin_site.admin_view(self.adjust_view),
            name="inventory_stockitem_adjust",
        )
        return [receive, adjust, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_adjust": self.has_adjust_permission(request)}
        return super().changelist_view(request, extra_context)

    def receive_view(self, request: HttpRequest) -> HttpResponse:
        """Goods in at a warehouse: a receipt on the ledger, with a reason."""
        if not self.has_adjust_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = StockReceiptForm(request.POST)
        else:
            # The stock item page links here with its product and warehouse.
            form = StockReceiptForm(initial=request.GET.dict())
        if form.is_bound and form.is_valid():
            product, warehouse = form.cleaned_data["product"], form.cleaned_data["warehouse"]
            try:
                received = stock_adjust(
                    sku=product.sku,
                    warehouse_code=warehouse.code,
                    quantity=form.cleaned_data["quantity"],
                    reason=form.cleaned_data["reason"],
                    actor=Actor.from_request(request),
                )
            except DomainError as error:
                self.message_user(request, f"{error.detail} ({error.code})", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Received {form.cleaned_data['quantity']} of {product.sku} at "
                    f"{warehouse.code}: on hand {received.on_hand}, reserved {received.reserved}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:inventory_stockitem_change", args=[received.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Receive stock",
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/inventory/stockitem/receive.html", context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_adjust": self.has_adjust_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def adjust_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Add or remove units on hand with a reason, through inventory.services."""
        if not self.has_adjust_permission(request):
            raise PermissionDenied
        stock_item = self.get_object(request, unquote(object_id))
        if stock_item is None:
            raise Http404("No such stock item.")
        form = StockAdjustmentForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                adjusted = stock_adjust(
                    sku=stock_item.product.sku,
                    warehouse_code=stock_item.warehouse.code,
                    quantity=form.cleaned_data["quantity"],
                    reason=form.cleaned_data["reason"],
                    actor=Actor.from_request(request),
                )
            except DomainError as error:
                self.message_user(request, f"{error.detail} ({error.code})", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Adjusted {stock_item.product.sku} at {stock_item.warehouse.code} by "
                    f"{form.cleaned_data['quantity']:+}: on hand {adjusted.on_hand}, "
                    f"reserved {adjusted.reserved}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:inventory_stockitem_change", args=[stock_item.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust stock of {stock_item.product.sku} at {stock_item.warehouse.code}",
            "opts": self.opts,
            "original": stock_item,
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/inventory/stockitem/adjust.html", context)


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "order_number",
        "order_line",
        "stock_item",
        "quantity",
        "status",
        "expires_at",
        "created_at",
    ]
    list_filter = ["status", "created_at"]
    list_select_related = ["order_line__order", "stock_item"]
    search_fields = ["order_line__order__number", "order_line__sku"]

    @admin.display(description="order", ordering="order_line__order__number")
    def order_number(self, reservation: Reservation) -> str:
        return reservation.order_line.order.number


@admin.register(BackorderClaim)
class BackorderClaimAdmin(ReadOnlyAdmin):
    """A product's backorder queue: oldest first is the order receipts serve."""

    list_display = [
        "id",
        "order_number",
        "product",
        "quantity",
        "allocated",
        "status",
        "created_at",
    ]
    list_filter = ["status", "created_at"]
    list_select_related = ["order_line__order", "product"]
    search_fields = ["order_line__order__number", "product__sku"]
    ordering = ["id"]

    @admin.display(description="order", ordering="order_line__order__number")
    def order_number(self, claim: BackorderClaim) -> str:
        return claim.order_line.order.number


@admin.register(StockMovement)
class StockMovementAdmin(ReadOnlyAdmin):
    """The ledger is append-only: services write it, nobody edits it."""

    list_display = [
        "id",
        "created_at",
        "stock_item",
        "kind",
        "on_hand_delta",
        "reserved_delta",
        "reason",
        "actor",
        "request_id",
    ]
    list_filter = ["kind", "created_at"]
    list_select_related = ["stock_item", "actor"]
    search_fields = ["stock_item__product__sku", "reason", "request_id"]
