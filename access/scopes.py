"""Every scope an API key can carry: the one list the policy, the admin, the API and the
README read."""

from django.db import models


class Scope(models.TextChoices):
    CATALOG_READ = "catalog:read", "read products"
    CATALOG_WRITE = "catalog:write", "create products"
    STOCK_READ = "stock:read", "read warehouses and stock"
    STOCK_WRITE = "stock:write", "create warehouses, adjust stock"
    ORDERS_READ = "orders:read", "read orders and their history"
    ORDERS_WRITE = "orders:write", "place, pay and cancel orders"
    SHIPMENTS_WRITE = "shipments:write", "capture and ship orders by hand"
    REFUNDS_WRITE = "refunds:write", "refund orders"
    TRANSITIONS_WRITE = "transitions:write", "take any order transition by name"
    EVENTS_READ = "events:read", "read every order's events from the feed"
    WEBHOOKS_WRITE = "webhooks:write", "re-deliver events to subscriptions, enable them again"
    API_KEYS_READ = "api_keys:read", "list API keys"
    API_KEYS_WRITE = "api_keys:write", "create, rotate and revoke API keys"


ALL_SCOPES: tuple[str, ...] = tuple(Scope.values)


def scopes_validate(scopes: list[str] | tuple[str, ...]) -> list[str]:
    """The scopes, deduplicated in the canonical order; ValueError names unknown ones."""
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)}")
    return [scope for scope in ALL_SCOPES if scope in scopes]
