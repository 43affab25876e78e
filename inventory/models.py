from django.conf import settings
from django.db import models
from django.db.models import F, Q

from core.models import TimeStampedModel


class Warehouse(TimeStampedModel):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    region = models.CharField(max_length=64, blank=True)
    # Higher priority warehouses are preferred when allocating an order.
    priority = models.IntegerField(default=0)
    is_active = models.BooleanField(default=True)
    # Where fulfilment requests go (blank: the warehouse is operated by hand), and the
    # shared secret that signs requests to it and its callbacks to us.
    fulfilment_url = models.URLField(blank=True)
    fulfilment_secret = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-priority", "code"]

    def __str__(self) -> str:
        return self.code


class Product(TimeStampedModel):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    # Unit price in minor units of `currency`.
    price = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    is_active = models.BooleanField(default=True)
    # A checkout that takes available stock below this writes a stock.low event (0: never).
    low_stock_threshold = models.PositiveIntegerField(default=0)
    # How many units checkouts may take beyond the stock, waiting for a receipt (0: none).
    backorder_limit = models.PositiveIntegerField(default=0)
    # Units of open backorder claims (BackorderClaim): raised by a checkout's conditional
    # update, never beyond backorder_limit; lowered as receipts cover claims or claims
    # are released.
    backordered = models.IntegerField(default=0)

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="product_price_non_negative"),
            models.CheckConstraint(
                condition=Q(backordered__gte=0) & Q(backordered__lte=F("backorder_limit")),
                name="product_backordered_within_limit",
            ),
        ]

    def __str__(self) -> str:
        return self.sku

    @property
    def allows_backorder(self) -> bool:
        return self.backorder_limit > 0

    @property
    def backorder_available(self) -> int:
        """Units checkouts may still take beyond the stock."""
        return max(self.backorder_limit - self.backordered, 0)


class StockItem(TimeStampedModel):
    """Units of one product in one warehouse: physically there, and held for orders.

    A hot product's stock in a warehouse may be split over several rows, its buckets
    (0..N-1; one row, bucket 0, by default), so concurrent checkouts lock different rows.
    Each bucket keeps the counters' rules on its own; the stock of a product in a
    warehouse is the sum over its buckets (see `stock_buckets_set`)."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="stock_items")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="stock_items")
    bucket = models.PositiveSmallIntegerField(default=0)
    on_hand = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)

    class Meta:
        ordering = ["product_id", "warehouse_id", "bucket"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "warehouse", "bucket"], name="stock_item_unique_bucket"
            ),
            models.CheckConstraint(
                condition=Q(reserved__gte=0), name="stock_item_reserved_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(reserved__lte=F("on_hand")),
                name="stock_item_reserved_within_on_hand",
            ),
        ]

    def __str__(self) -> str:
        suffix = f"#{self.bucket}" if self.bucket else ""
        return f"{self.product.sku}@{self.warehouse.code}{suffix}"

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class Reservation(TimeStampedModel):
    """Units of a stock item held for one order line."""

    class Status(models.TextChoices):
        HELD = "held", "Held"  # counted in StockItem.reserved
        COMMITTED = "committed", "Committed"  # shipped: left on_hand and reserved
        RELEASED = "released", "Released"  # given back: cancelled or expired

    order_line = models.ForeignKey(
        "orders.OrderLine", on_delete=models.CASCADE, related_name="reservations"
    )
    stock_item = models.ForeignKey(StockItem, on_delete=models.PROTECT, related_name="reservations")
    quantity = models.IntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.HELD)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="reservation_quantity_positive"
            ),
        ]
        indexes = [models.Index(fields=["stock_item", "status"])]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.stock_item_id} ({self.status})"


class StockMovement(models.Model):
    """Append-only ledger: summing the deltas re-derives on_hand and reserved."""

    class Kind(models.TextChoices):
        RECEIPT = "receipt", "Receipt"
        ADJUSTMENT = "adjustment", "Adjustment"
        RESERVE = "reserve", "Reserve"
        RELEASE = "release", "Release"
        SHIP = "ship", "Ship"
        # Units moved between buckets of one stock item: a set of rows summing to 0.
        REBALANCE = "rebalance", "Rebalance"
        # Units a customer sent back, put on the shelf again (on_hand += quantity).
        RETURN = "return", "Return"

    stock_item = models.ForeignKey(StockItem, on_delete=models.PROTECT, related_name="movements")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    on_hand_delta = models.IntegerField(default=0)
    reserved_delta = models.IntegerField(default=0)
    reason = models.CharField(max_length=255, blank=True)
    reservation = models.ForeignKey(
        Reservation, null=True, blank=True, on_delete=models.PROTECT, related_name="movements"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.stock_item_id} {self.on_hand_delta:+}/{self.reserved_delta:+}"


class BackorderClaim(TimeStampedModel):
    """Units of one order line that no stock covered at checkout: a place in the
    product's queue (the id is the order of arrival). A receipt turns claims into held
    reservations, oldest first (inventory.backorders); open units count in
    Product.backordered."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"  # some units still wait for stock
        ALLOCATED = "allocated", "Allocated"  # every unit became a held reservation
        RELEASED = "released", "Released"  # the order was cancelled, expired or edited

    order_line = models.ForeignKey(
        "orders.OrderLine", on_delete=models.CASCADE, related_name="backorder_claims"
    )
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="backorder_claims")
    quantity = models.IntegerField()
    # Units already turned into reservations (each through a `reserve` ledger row).
    allocated = models.IntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    # The expiry its reservations get (the order's reservation_expires_at at checkout).
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="backorder_claim_quantity_positive"
            ),
            models.CheckConstraint(
                condition=Q(allocated__gte=0) & Q(allocated__lte=F("quantity")),
                name="backorder_claim_allocated_within_quantity",
            ),
            models.CheckConstraint(
                condition=~Q(status="allocated") | Q(allocated=F("quantity")),
                name="backorder_claim_allocated_in_full",
            ),
        ]
        indexes = [
            # A product's queue, oldest first.
            models.Index(
                fields=["product", "id"],
                condition=Q(status="open"),
                name="backorder_claim_queue",
            )
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id} for line {self.order_line_id} ({self.status})"

    @property
    def open_quantity(self) -> int:
        return self.quantity - self.allocated
