from django.contrib import admin

from pricing.models import ShippingRate, TaxRate


@admin.register(ShippingRate)
class ShippingRateAdmin(admin.ModelAdmin):
    list_display = ["country", "method", "amount", "currency", "updated_at"]
    list_filter = ["method", "currency"]
    search_fields = ["country"]


@admin.register(TaxRate)
class TaxRateAdmin(admin.ModelAdmin):
    list_display = ["country", "basis_points", "shipping_taxable", "updated_at"]
    list_filter = ["shipping_taxable"]
    search_fields = ["country"]
