import uuid
from collections.abc import Iterable

from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from core.errors import NotFound
from inventory.models import (
    BackorderClaim,
    Product,
    Reservation,
    StockItem,
    StockMovement,
    Warehouse,
)


def product_list(*, include_inactive: bool = False) -> QuerySet[Product]:
    """Products annotated with `available`: on_hand - reserved over active warehouses."""
    products = Product.objects.annotate(
        available=Coalesce(
            Sum(
                F("stock_items__on_hand") - F("stock_items__reserved"),
                filter=Q(stock_items__warehouse__is_active=True),
            ),
            0,
        )
    ).order_by("sku")
    if not include_inactive:
        products = products.filter(is_active=True)
    return products


def product_get(*, sku: str, include_inactive: bool = False) -> Product:
    # PostgreSQL text cannot hold NUL, so no SKU contains one (and querying it would fail).
    product = (
        None
        if "\x00" in sku
        else product_list(include_inactive=include_inactive).filter(sku=sku).first()
    )
    if product is None:
        raise NotFound(f"No product with SKU '{sku}'.")
    return product


def warehouse_list() -> QuerySet[Warehouse]:
    return Warehouse.objects.all()


def stock_item_list(*, sku: str | None = None) -> QuerySet[StockItem]:
    items = StockItem.objects.select_related("product", "warehouse").order_by(
        "product__sku", "-warehouse__priority", "warehouse__code", "bucket"
    )
    if sku:
        # PostgreSQL text cannot hold NUL: no SKU matches (and querying it would fail).
        items = items.none() if "\x00" in sku else items.filter(product__sku=sku)
    return items


def stock_ledger_totals() -> dict[int, tuple[int, int]]:
    """Re-derive (on_hand, reserved) per stock item id from the movement ledger."""
    rows = StockMovement.objects.values("stock_item_id").annotate(
        on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta")
    )
    return {row["stock_item_id"]: (row["on_hand"], row["reserved"]) for row in rows}


def products_available(*, product_ids: list[int]) -> dict[int, int]:
    """Units available (on_hand - reserved over active warehouses) per product, as this
    transaction sees them."""
    rows = (
        StockItem.objects.filter(product_id__in=product_ids, warehouse__is_active=True)
        .values("product_id")
        .annotate(units=Sum(F("on_hand") - F("reserved")))
        .values_list("product_id", "units")
    )
    available = dict.fromkeys(product_ids, 0)
    available.update({product_id: int(units or 0) for product_id, units in rows})
    return available


def order_backordered_units(*, order_id: uuid.UUID | str) -> int:
    """Units of the order's lines still waiting for stock (open backorder claims)."""
    return BackorderClaim.objects.filter(
        order_line__order_id=order_id, status=BackorderClaim.Status.OPEN
    ).aggregate(units=Coalesce(Sum(F("quantity") - F("allocated")), 0))["units"]


def reservations_held_exist(*, order_line_ids: Iterable[int]) -> bool:
    """Some unit of these order lines is still held for them (not shipped, not released)."""
    return Reservation.objects.filter(
        order_line_id__in=list(order_line_ids), status=Reservation.Status.HELD
    ).exists()
