"""Inventory errors, each with a stable code."""

from core.errors import DomainError


class UnknownSku(DomainError):
    code = "unknown_sku"
    status = 422
    title = "Unknown SKU"

    def __init__(self, skus: list[str]) -> None:
        super().__init__(f"Unknown or inactive SKU(s): {', '.join(skus)}", skus=skus)


class InsufficientStock(DomainError):
    code = "insufficient_stock"
    status = 409
    title = "Insufficient stock"

    def __init__(self, skus: list[str]) -> None:
        super().__init__(f"Not enough stock for SKU(s): {', '.join(skus)}", skus=skus)


class StockConflict(DomainError):
    code = "stock_conflict"
    status = 409
    title = "Stock adjustment conflicts with current stock"


class SkuAlreadyExists(DomainError):
    code = "sku_exists"
    status = 409
    title = "A product with this SKU already exists"


class WarehouseAlreadyExists(DomainError):
    code = "warehouse_exists"
    status = 409
    title = "A warehouse with this code already exists"


class ReservationRaceLost(Exception):
    """A planned stock item no longer had the units when the update ran; re-plan."""
