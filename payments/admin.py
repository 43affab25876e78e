"""Payments admin: the Stripe events as received. Payments and their provider calls are
shown, with the money actions, by flows.admin."""

from django.contrib import admin

from core.admin import ReadOnlyAdmin
from payments.models import StripeEvent


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "received_at", "processed_at", "error"]
    list_filter = ["type", "received_at"]
    search_fields = ["event_id", "type"]
    date_hierarchy = "received_at"
