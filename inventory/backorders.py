"""Backorders: units a checkout takes beyond the stock of a product that allows them,
and their allocation when stock arrives.

The database keeps the promise, as it does for reservations: a claim raises
Product.backordered in a conditional update that cannot pass backorder_limit (and a
CHECK constraint backs it), and a receipt turns the oldest open claims into held
reservations through the same counter rule and ledger as any reservation. Lock order:
stock items, then claims (by id), then products (by id); every path here keeps it.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.utils import timezone

from core.actors import Actor
from inventory.counters import StockDelta, stock_counters_apply
from inventory.errors import ReservationRaceLost
from inventory.models import BackorderClaim, Reservation, StockItem, StockMovement


@dataclass(frozen=True)
class BackorderRequest:
    order_line_id: int
    product_id: int
    quantity: int


@dataclass(frozen=True)
class BackorderAllocation:
    """What one receipt's allocation did: the orders whose claims it touched, and how
    many units it turned into reservations."""

    order_ids: list[str]
    units: int


_CLAIM_SQL = """
WITH wanted AS (
    SELECT * FROM unnest(%(product_ids)s::bigint[], %(order_line_ids)s::bigint[],
                         %(quantities)s::integer[])
        AS w(product_id, order_line_id, quantity)
), totals AS (
    SELECT product_id, sum(quantity)::integer AS quantity FROM wanted GROUP BY product_id
), locked AS MATERIALIZED (
    SELECT p.id FROM inventory_product p
    WHERE p.id IN (SELECT product_id FROM totals)
    ORDER BY p.id
    FOR NO KEY UPDATE
), updated AS (
    UPDATE inventory_product p
    SET backordered = p.backordered + t.quantity, updated_at = %(now)s
    FROM totals t JOIN locked l ON l.id = t.product_id
    WHERE p.id = t.product_id AND p.backordered + t.quantity <= p.backorder_limit
    RETURNING p.id
), enough AS MATERIALIZED (
    SELECT (SELECT count(*) FROM updated) = (SELECT count(*) FROM totals) AS ok
), claimed AS (
    INSERT INTO inventory_backorderclaim
        (created_at, updated_at, order_line_id, product_id, quantity, allocated, status,
         expires_at)
    SELECT %(now)s, %(now)s, w.order_line_id, w.product_id, w.quantity, 0, %(open)s,
           %(expires_at)s
    FROM wanted w WHERE (SELECT ok FROM enough)
    RETURNING id, order_line_id, product_id, quantity
)
SELECT c.id, c.order_line_id, c.product_id, c.quantity FROM claimed c ORDER BY c.id
"""

# Lower products' counters by what was released or allocated; products locked by id.
_UNCLAIM_SQL = """
WITH wanted AS (
    SELECT * FROM unnest(%s::bigint[], %s::integer[]) AS w(product_id, quantity)
), locked AS MATERIALIZED (
    SELECT p.id FROM inventory_product p
    WHERE p.id IN (SELECT product_id FROM wanted)
    ORDER BY p.id
    FOR NO KEY UPDATE
)
UPDATE inventory_product p
SET backordered = p.backordered - w.quantity, updated_at = %s
FROM wanted w JOIN locked l ON l.id = w.product_id
WHERE p.id = w.product_id AND p.backordered >= w.quantity
RETURNING p.id
"""


def backorder_claims_create(
    *, requests: Sequence[BackorderRequest], expires_at: datetime
) -> list[BackorderClaim]:
    """Queue the lines' units that no stock covers: one statement, which raises each
    product's backordered counter only where it stays within its backorder_limit. Must
    run inside a transaction, after the reservations (the product rows are hot for a
    backordered product).

    Raise ReservationRaceLost (the caller's transaction must roll back) when a product's
    backorder room was taken since the plan read it.
    """
    if not requests:
        return []
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            {
                "product_ids": [request.product_id for request in requests],
                "order_line_ids": [request.order_line_id for request in requests],
                "quantities": [request.quantity for request in requests],
                "now": now,
                "open": BackorderClaim.Status.OPEN.value,
                "expires_at": expires_at,
            },
        )
        rows = cursor.fetchall()
    if not rows:
        raise ReservationRaceLost()
    return [
        BackorderClaim(
            pk=claim_id,
            order_line_id=order_line_id,
            product_id=product_id,
            quantity=quantity,
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
        )
        for claim_id, order_line_id, product_id, quantity in rows
    ]


def _products_unclaim(units: dict[int, int]) -> None:
    units = {pid: qty for pid, qty in units.items() if qty > 0}
    if not units:
        return
    ids = sorted(units)
    with connection.cursor() as cursor:
        cursor.execute(_UNCLAIM_SQL, [ids, [units[pid] for pid in ids], timezone.now()])
        updated = {row[0] for row in cursor.fetchall()}
    if updated != set(ids):
        # Open claims are always counted in backordered; a mismatch is corruption.
        raise RuntimeError("Backorder counters disagree with open claims")


def backorder_claims_release(*, order_line_ids: Iterable[int]) -> list[BackorderClaim]:
    """Drop the lines' open claims (their order was cancelled, expired or edited): the
    units they still wait for leave the products' backordered counters. Run inside a
    transaction. Return the claims released."""
    claims = list(
        BackorderClaim.objects.select_for_update()
        .filter(order_line_id__in=list(order_line_ids), status=BackorderClaim.Status.OPEN)
        .order_by("pk")
    )
    if not claims:
        return []
    BackorderClaim.objects.filter(pk__in=[claim.pk for claim in claims]).update(
        status=BackorderClaim.Status.RELEASED, updated_at=timezone.now()
    )
    released: dict[int, int] = defaultdict(int)
    for claim in claims:
        released[claim.product_id] += claim.open_quantity
    _products_unclaim(released)
    return claims


def backorders_allocate_locked(
    *, product_id: int, warehouse_id: int, actor: Actor, reason: str
) -> BackorderAllocation:
    """Turn the product's open claims into held reservations at this warehouse, oldest
    claim first, as far as its unreserved units go. Run inside a transaction.

    The warehouse's stock rows are locked first (a receipt's caller holds them already),
    then the open claims in id order, so concurrent receipts allocate one after the
    other and never promise a unit twice: each reservation goes through the counters'
    rule (reserved <= on_hand) and leaves a `reserve` ledger row. A claim partly
    covered stays open with what it still waits for.
    """
    buckets = list(
        StockItem.objects.select_for_update(no_key=True)
        .filter(product_id=product_id, warehouse_id=warehouse_id, warehouse__is_active=True)
        .order_by("pk")
    )
    available = [[bucket.pk, bucket.on_hand - bucket.reserved] for bucket in buckets]
    if sum(units for _, units in available) <= 0:
        return BackorderAllocation(order_ids=[], units=0)
    claims = list(
        BackorderClaim.objects.select_related("order_line")
        .select_for_update(of=("self",))
        .filter(product_id=product_id, status=BackorderClaim.Status.OPEN)
        .order_by("pk")
    )
    reservations: list[Reservation] = []
    touched: list[BackorderClaim] = []
    for claim in claims:
        if all(units <= 0 for _, units in available):
            break
        wanted, taken = claim.open_quantity, 0
        for slot in available:
            take = min(wanted - taken, slot[1])
            if take <= 0:
                continue
            reservations.append(
                Reservation(
                    order_line_id=claim.order_line_id,
                    stock_item_id=slot[0],
                    quantity=take,
                    status=Reservation.Status.HELD,
                    expires_at=claim.expires_at,
                )
            )
            slot[1] -= take
            taken += take
        if taken:
            claim.allocated += taken
            touched.append(claim)
    if not reservations:
        return BackorderAllocation(order_ids=[], units=0)
    deltas = [StockDelta(r.stock_item_id, 0, r.quantity) for r in reservations]
    if stock_counters_apply(deltas) != {delta.stock_item_id for delta in deltas}:
        raise RuntimeError("Locked stock refused units it showed unreserved")
    Reservation.objects.bulk_create(reservations)
    StockMovement.objects.bulk_create(
        StockMovement(
            stock_item_id=reservation.stock_item_id,
            kind=StockMovement.Kind.RESERVE,
            reserved_delta=reservation.quantity,
            reservation=reservation,
            reason=reason[:255],
            actor=actor.user,
            request_id=actor.request_id,
        )
        for reservation in reservations
    )
    now = timezone.now()
    for claim in touched:
        claim.status = (
            BackorderClaim.Status.ALLOCATED
            if claim.allocated == claim.quantity
            else BackorderClaim.Status.OPEN
        )
        claim.updated_at = now
    BackorderClaim.objects.bulk_update(touched, ["allocated", "status", "updated_at"])
    units = sum(reservation.quantity for reservation in reservations)
    _products_unclaim({product_id: units})
    order_ids = list(dict.fromkeys(str(claim.order_line.order_id) for claim in touched))
    return BackorderAllocation(order_ids=order_ids, units=units)
