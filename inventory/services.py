"""Stock writes. Every change to on_hand or reserved goes through
`stock_counters_apply` (inventory.counters) (or,
for a reservation, `_RESERVE_SQL`, which keeps the same rule in one statement) and
leaves a StockMovement row, so the ledger always re-derives the counters."""

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from core.actors import Actor
from core.errors import NotFound
from core.outbox import outbox_publish
from inventory.allocation import Allocation, StockCandidate, allocate, short_products
from inventory.backorders import (
    BackorderAllocation,
    backorder_claims_release,
    backorders_allocate_locked,
)
from inventory.counters import StockDelta, stock_counters_apply
from inventory.errors import (
    InsufficientStock,
    ReservationRaceLost,
    SkuAlreadyExists,
    StockConflict,
    WarehouseAlreadyExists,
)
from inventory.models import Product, Reservation, StockItem, StockMovement, Warehouse


@dataclass(frozen=True)
class ReservationRequest:
    order_line_id: int
    product_id: int
    sku: str
    quantity: int


def product_create(*, sku: str, name: str, price: int, currency: str, actor: Actor) -> Product:
    try:
        with transaction.atomic():
            return Product.objects.create(
                sku=sku, name=name, price=price, currency=currency.upper()
            )
    except IntegrityError as error:
        raise SkuAlreadyExists(f"SKU '{sku}' already exists.") from error


def warehouse_create(
    *, code: str, name: str, region: str, priority: int, actor: Actor
) -> Warehouse:
    try:
        with transaction.atomic():
            return Warehouse.objects.create(code=code, name=name, region=region, priority=priority)
    except IntegrityError as error:
        raise WarehouseAlreadyExists(f"Warehouse '{code}' already exists.") from error


def stock_adjust(
    *, sku: str, warehouse_code: str, quantity: int, reason: str, actor: Actor
) -> StockItem:
    """Add (receipt, quantity > 0) or remove units on hand; never below what is reserved.

    A stock item split over buckets takes a receipt spread evenly over its buckets and
    an adjustment down from its buckets with the most unreserved units first, one ledger
    row per bucket touched. The returned item carries the counters summed over buckets.
    """
    product = Product.objects.filter(sku=sku).first()
    if product is None:
        raise NotFound(f"Unknown SKU '{sku}'.")
    warehouse = Warehouse.objects.filter(code=warehouse_code).first()
    if warehouse is None:
        raise NotFound(f"Unknown warehouse '{warehouse_code}'.")
    with transaction.atomic():
        StockItem.objects.get_or_create(product=product, warehouse=warehouse, bucket=0)
        buckets = list(
            StockItem.objects.filter(product=product, warehouse=warehouse)
            .order_by("pk")
            .select_for_update(no_key=True)
        )
        on_hand = sum(b.on_hand for b in buckets)
        reserved = sum(b.reserved for b in buckets)
        split = _adjustment_split(buckets, quantity)
        if split is None or (split and not stock_counters_apply(split)):
            raise StockConflict(
                f"Adjusting {sku} at {warehouse_code} by {quantity} would leave on_hand "
                f"{on_hand + quantity} below reserved {reserved}.",
                on_hand=on_hand,
                reserved=reserved,
            )
        kind = StockMovement.Kind.RECEIPT if quantity > 0 else StockMovement.Kind.ADJUSTMENT
        movements = StockMovement.objects.bulk_create(
            StockMovement(
                stock_item_id=delta.stock_item_id,
                kind=kind,
                on_hand_delta=delta.on_hand_delta,
                reason=reason,
                actor=actor.user,
                request_id=actor.request_id,
            )
            for delta in (split or [StockDelta(buckets[0].pk, 0, 0)])
        )
        allocated = 0
        if quantity > 0 and product.backorder_limit > 0:
            allocated = _backorders_on_receipt(
                product_id=product.pk,
                warehouse_id=warehouse.pk,
                receipt_movement_id=movements[0].pk,
                actor=actor,
            ).units
    item = buckets[0]
    item.refresh_from_db()
    if len(buckets) > 1:
        item.on_hand, item.reserved = on_hand + quantity, reserved + allocated
    return item


def _backorders_on_receipt(
    *, product_id: int, warehouse_id: int, receipt_movement_id: int, actor: Actor
) -> BackorderAllocation:
    """Units that arrived go to the product's waiting backorder claims first, in the
    receipt's transaction (so no checkout takes them ahead of the queue); the outbox
    message moves the orders whose claims are all covered on (flows.backorders), and
    runs one more allocation pass for claims this one could not see."""
    allocation = backorders_allocate_locked(
        product_id=product_id,
        warehouse_id=warehouse_id,
        actor=actor,
        reason=f"backorder allocation, receipt {receipt_movement_id}",
    )
    outbox_publish(
        topic="stock.received",
        payload={
            "product_id": product_id,
            "warehouse_id": warehouse_id,
            "order_ids": allocation.order_ids,
        },
        key=f"stock-received-{receipt_movement_id}",
    )
    return allocation


def _adjustment_split(buckets: Sequence[StockItem], quantity: int) -> list[StockDelta] | None:
    """Per-bucket on_hand deltas summing to `quantity` (None: not enough unreserved)."""
    if quantity >= 0:
        share, extra = divmod(quantity, len(buckets))
        return [
            StockDelta(bucket.pk, share + (1 if index < extra else 0), 0)
            for index, bucket in enumerate(buckets)
            if share + (1 if index < extra else 0)
        ]
    remaining = -quantity
    deltas = []
    for bucket in sorted(buckets, key=lambda b: (b.reserved - b.on_hand, b.pk)):
        take = min(bucket.on_hand - bucket.reserved, remaining)
        if take > 0:
            deltas.append(StockDelta(bucket.pk, -take, 0))
            remaining -= take
    return None if remaining else deltas


def stock_plan(
    *,
    demand: dict[int, int],
    skus: dict[int, str],
    exclude_warehouse_ids: Iterable[int] = (),
    fullest_buckets_first: bool = False,
) -> list[Allocation]:
    """Plan where the demand (product id -> quantity) is taken from, on a fresh read.

    Warehouses are chosen on the stock item's total over its buckets; within a stock
    item split over buckets, the units come from a pseudo-randomly chosen bucket first
    (so concurrent checkouts of a hot product lock different rows), then the next ones;
    or, with `fullest_buckets_first` (a re-plan after a lost race), from the buckets with
    the most units first.
    """
    plan, _short = _stock_plan(
        demand=demand,
        skus=skus,
        exclude_warehouse_ids=exclude_warehouse_ids,
        fullest_buckets_first=fullest_buckets_first,
        backorder_room={},
    )
    return plan


def stock_plan_backordering(
    *,
    demand: dict[int, int],
    skus: dict[int, str],
    backordering_product_ids: Iterable[int],
    fullest_buckets_first: bool = False,
) -> tuple[list[Allocation], dict[int, int]]:
    """Plan as `stock_plan` does, except that a product allowing backorders whose stock
    is short takes all of its available units and leaves the rest (while its backorder
    room lasts, on a fresh read) to backorder claims. Return the plan and the units to
    claim per product id. Raise InsufficientStock as `stock_plan` does, naming also the
    products whose shortfall exceeds their backorder room.
    """
    room = dict(
        Product.objects.filter(pk__in=list(backordering_product_ids)).values_list(
            "pk", F("backorder_limit") - F("backordered")
        )
    )
    return _stock_plan(
        demand=demand,
        skus=skus,
        exclude_warehouse_ids=(),
        fullest_buckets_first=fullest_buckets_first,
        backorder_room=room,
    )


def _stock_plan(
    *,
    demand: dict[int, int],
    skus: dict[int, str],
    exclude_warehouse_ids: Iterable[int],
    fullest_buckets_first: bool,
    backorder_room: dict[int, int],
) -> tuple[list[Allocation], dict[int, int]]:
    # Plain rows, not model instances: this read is on every checkout's path.
    rows = (
        StockItem.objects.filter(
            product_id__in=demand,
            warehouse__is_active=True,
            on_hand__gt=F("reserved"),
        )
        .exclude(warehouse_id__in=list(exclude_warehouse_ids))
        .values_list(
            "pk",
            "product_id",
            "warehouse_id",
            "warehouse__priority",
            "warehouse__code",
            F("on_hand") - F("reserved"),
        )
    )
    return stock_plan_from_rows(
        demand=demand,
        skus=skus,
        rows=rows,
        fullest_buckets_first=fullest_buckets_first,
        backorder_room=backorder_room,
    )


# A stock row as planning reads it: (stock item id, product id, warehouse id, warehouse
# priority, warehouse code, available units), ordered by product, warehouse, bucket.
StockRow = tuple[int, int, int, int, str, int]


def stock_plan_from_rows(
    *,
    demand: dict[int, int],
    skus: dict[int, str],
    rows: Iterable[StockRow],
    fullest_buckets_first: bool = False,
    backorder_room: dict[int, int] | None = None,
) -> tuple[list[Allocation], dict[int, int]]:
    """Plan as `stock_plan` (or, with `backorder_room`, `stock_plan_backordering`) does,
    from stock rows the caller read: the active warehouses' rows of the demanded products
    with units available, in StockItem's order. For a caller that reads them with other
    rows in one statement."""
    # One candidate per (product, warehouse), summed over buckets.
    buckets: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    candidates: dict[tuple[int, int], StockCandidate] = {}
    for stock_item_id, product_id, warehouse_id, priority, code, available in rows:
        key = (product_id, warehouse_id)
        buckets[key].append((stock_item_id, available))
        known = candidates.get(key)
        candidates[key] = StockCandidate(
            stock_item_id=stock_item_id if known is None else known.stock_item_id,
            product_id=product_id,
            warehouse_id=warehouse_id,
            warehouse_priority=priority,
            warehouse_code=code,
            available=available + (0 if known is None else known.available),
        )
    shortfall: dict[int, int] = {}
    if backorder_room:
        totals: dict[int, int] = defaultdict(int)
        for candidate in candidates.values():
            totals[candidate.product_id] += candidate.available
        for pid, room in backorder_room.items():
            missing = demand[pid] - totals[pid]
            if 0 < missing <= room:
                shortfall[pid] = missing
        demand = {pid: qty - shortfall.get(pid, 0) for pid, qty in demand.items()}
        demand = {pid: qty for pid, qty in demand.items() if qty > 0}
    plan = allocate(demand, list(candidates.values()))
    if plan is None:
        short = short_products(demand, list(candidates.values())) or sorted(demand)
        raise InsufficientStock(sorted(skus[pid] for pid in short))
    if all(len(rows) == 1 for rows in buckets.values()):
        return plan, shortfall
    return [
        part
        for allocation in plan
        for part in _bucket_split(
            allocation,
            buckets[(allocation.product_id, allocation.warehouse_id)],
            fullest_first=fullest_buckets_first,
        )
    ], shortfall


def _bucket_split(
    allocation: Allocation, buckets: list[tuple[int, int]], *, fullest_first: bool
) -> list[Allocation]:
    """Take an allocation's units from the stock item's buckets ((id, available) pairs)."""
    if len(buckets) == 1:
        return [allocation]
    if fullest_first:
        ordered = sorted(buckets, key=lambda bucket: (-bucket[1], bucket[0]))
    else:
        ordered = sorted(buckets)
        start = random.randrange(len(ordered))  # noqa: S311 - spreading load, not a secret
        ordered = ordered[start:] + ordered[:start]
    parts = []
    remaining = allocation.quantity
    for stock_item_id, available in ordered:
        take = min(available, remaining)
        parts.append(
            Allocation(stock_item_id, allocation.product_id, allocation.warehouse_id, take)
        )
        remaining -= take
        if remaining == 0:
            break
    return parts


# Reserve planned units in one statement: lock the stock rows in primary-key order, add
# to reserved where the row keeps the rule _stock_apply keeps (reserved <= on_hand after
# the change; the condition is rechecked on the row's latest version), and only when
# every row took its units, insert the reservations and their ledger rows. When any row
# is short, no reservation or ledger row is written and no row comes back; the rows that
# were updated stay so until the caller rolls back (as after any ReservationRaceLost).
_RESERVE_SQL = """
WITH wanted AS (
    SELECT * FROM unnest(%(stock_item_ids)s::bigint[], %(order_line_ids)s::bigint[],
                         %(quantities)s::integer[])
        AS w(stock_item_id, order_line_id, quantity)
), totals AS (
    SELECT stock_item_id, sum(quantity)::integer AS quantity FROM wanted GROUP BY stock_item_id
), locked AS MATERIALIZED (
    SELECT s.id FROM inventory_stockitem s
    WHERE s.id IN (SELECT stock_item_id FROM totals)
    ORDER BY s.id
    FOR NO KEY UPDATE
), updated AS (
    UPDATE inventory_stockitem s
    SET reserved = s.reserved + t.quantity, updated_at = %(now)s
    FROM totals t JOIN locked l ON l.id = t.stock_item_id
    WHERE s.id = t.stock_item_id AND s.on_hand >= s.reserved + t.quantity
    RETURNING s.id
), enough AS MATERIALIZED (
    SELECT (SELECT count(*) FROM updated) = (SELECT count(*) FROM totals) AS ok
), reserved AS (
    INSERT INTO inventory_reservation
        (created_at, updated_at, order_line_id, stock_item_id, quantity, status, expires_at)
    SELECT %(now)s, %(now)s, w.order_line_id, w.stock_item_id, w.quantity, %(held)s,
           %(expires_at)s
    FROM wanted w WHERE (SELECT ok FROM enough)
    RETURNING id, order_line_id, stock_item_id, quantity
), moved AS (
    INSERT INTO inventory_stockmovement
        (stock_item_id, kind, on_hand_delta, reserved_delta, reason, reservation_id,
         actor_id, request_id, created_at)
    SELECT r.stock_item_id, %(kind)s, 0, r.quantity, '', r.id, %(actor_id)s,
           %(request_id)s, %(now)s
    FROM reserved r
)
SELECT r.id, r.order_line_id, r.stock_item_id, r.quantity FROM reserved r ORDER BY r.id
"""


def stock_reserve(
    *,
    requests: Sequence[ReservationRequest],
    plan: Sequence[Allocation],
    expires_at: datetime,
    actor: Actor,
) -> list[Reservation]:
    """Hold the planned units for the order lines: one statement. Must run inside a
    transaction.

    Raise ReservationRaceLost (after which the caller's transaction or savepoint must
    roll back) when another checkout took planned units first. The stock rows are locked
    by this statement, so callers run it last, to hold the hot rows for as short a time
    as possible.
    """
    line_by_product = {request.product_id: request.order_line_id for request in requests}
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _RESERVE_SQL,
            {
                "stock_item_ids": [allocation.stock_item_id for allocation in plan],
                "order_line_ids": [line_by_product[a.product_id] for a in plan],
                "quantities": [allocation.quantity for allocation in plan],
                "now": now,
                "expires_at": expires_at,
                "held": Reservation.Status.HELD.value,
                "kind": StockMovement.Kind.RESERVE.value,
                "actor_id": actor.user.pk if actor.user is not None else None,
                "request_id": actor.request_id,
            },
        )
        rows = cursor.fetchall()
    if not rows:
        raise ReservationRaceLost()
    return [
        Reservation(
            pk=reservation_id,
            order_line_id=order_line_id,
            stock_item_id=stock_item_id,
            quantity=quantity,
            status=Reservation.Status.HELD,
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
        )
        for reservation_id, order_line_id, stock_item_id, quantity in rows
    ]


def _reservations_settle(
    *,
    order_line_ids: Iterable[int],
    new_status: str,
    kind: str,
    ships: bool,
    actor: Actor,
    reason: str,
    warehouse_id: int | None = None,
) -> list[Reservation]:
    reservations = Reservation.objects.filter(
        order_line_id__in=list(order_line_ids), status=Reservation.Status.HELD
    )
    if warehouse_id is not None:
        reservations = reservations.filter(stock_item__warehouse_id=warehouse_id)
    held = list(reservations.order_by("pk"))
    if not held:
        return []
    Reservation.objects.filter(pk__in=[r.pk for r in held]).update(
        status=new_status, updated_at=timezone.now()
    )
    StockMovement.objects.bulk_create(
        StockMovement(
            stock_item_id=reservation.stock_item_id,
            kind=kind,
            on_hand_delta=-reservation.quantity if ships else 0,
            reserved_delta=-reservation.quantity,
            reservation=reservation,
            reason=reason,
            actor=actor.user,
            request_id=actor.request_id,
        )
        for reservation in held
    )
    deltas = [StockDelta(r.stock_item_id, -r.quantity if ships else 0, -r.quantity) for r in held]
    updated = stock_counters_apply(deltas)
    if updated != {d.stock_item_id for d in deltas}:
        # Held reservations are always counted in reserved; a mismatch is corruption.
        raise RuntimeError("Stock counters disagree with held reservations")
    return held


def reservations_release(
    *,
    order_line_ids: Iterable[int],
    actor: Actor,
    reason: str,
    warehouse_id: int | None = None,
) -> list[Reservation]:
    """Give the held units of these order lines (at one warehouse, when given) back to
    stock. Run inside a transaction.

    For whole lines (no warehouse given: a cancel, an expiry, an edit that shrinks or
    removes them) their open backorder claims go too, so a line never waits for units
    it no longer holds a place for. Units released of a product with claims waiting
    serve that queue first: a `stock.received` message asks a worker for an allocation
    pass at their warehouse (flows.backorders), as a receipt does."""
    order_line_ids = list(order_line_ids)
    released = _reservations_settle(
        order_line_ids=order_line_ids,
        new_status=Reservation.Status.RELEASED,
        kind=StockMovement.Kind.RELEASE,
        ships=False,
        actor=actor,
        reason=reason,
        warehouse_id=warehouse_id,
    )
    if warehouse_id is None:
        backorder_claims_release(order_line_ids=order_line_ids)
    if released:
        _backorder_queues_serve(released)
    return released


def _backorder_queues_serve(released: Sequence[Reservation]) -> None:
    """Ask for an allocation pass where released units meet open backorder claims of
    their product: one outbox message per (product, warehouse), keyed by the first
    reservation released there (a reservation is released once)."""
    places: dict[tuple[int, int], int] = {}
    items = {
        pk: (product_id, warehouse_id)
        for pk, product_id, warehouse_id in StockItem.objects.filter(
            pk__in={r.stock_item_id for r in released},
            product__backorder_limit__gt=0,
            product__backordered__gt=0,
        ).values_list("pk", "product_id", "warehouse_id")
    }
    for reservation in released:
        place = items.get(reservation.stock_item_id)
        if place is not None:
            places[place] = min(places.get(place, reservation.pk), reservation.pk)
    for (product_id, warehouse_id), first in sorted(places.items()):
        outbox_publish(
            topic="stock.received",
            payload={"product_id": product_id, "warehouse_id": warehouse_id, "order_ids": []},
            key=f"stock-released-{first}-{product_id}-{warehouse_id}",
        )


def reservations_commit(
    *, order_line_ids: Iterable[int], actor: Actor, reason: str
) -> list[Reservation]:
    """Ship the held units: they leave both on_hand and reserved. Run inside a transaction."""
    return _reservations_settle(
        order_line_ids=order_line_ids,
        new_status=Reservation.Status.COMMITTED,
        kind=StockMovement.Kind.SHIP,
        ships=True,
        actor=actor,
        reason=reason,
    )


def reservations_commit_quantity(
    *, order_line_id: int, warehouse_id: int, quantity: int, actor: Actor, reason: str
) -> int:
    """Ship `quantity` held units of one order line at one warehouse (a partial
    shipment): a held reservation larger than what ships is split, the shipped part
    committed. Run inside a transaction. Return the units committed (fewer when fewer
    were held there)."""
    held = list(
        Reservation.objects.select_for_update()
        .filter(
            order_line_id=order_line_id,
            stock_item__warehouse_id=warehouse_id,
            status=Reservation.Status.HELD,
        )
        .order_by("pk")
    )
    committed: list[Reservation] = []
    left = quantity
    for reservation in held:
        if left <= 0:
            break
        take = min(left, reservation.quantity)
        if take == reservation.quantity:
            reservation.status = Reservation.Status.COMMITTED
            reservation.save(update_fields=["status", "updated_at"])
            committed.append(reservation)
        else:
            reservation.quantity -= take
            reservation.save(update_fields=["quantity", "updated_at"])
            committed.append(
                Reservation.objects.create(
                    order_line_id=order_line_id,
                    stock_item_id=reservation.stock_item_id,
                    quantity=take,
                    status=Reservation.Status.COMMITTED,
                    expires_at=reservation.expires_at,
                )
            )
        left -= take
    if not committed:
        return 0
    StockMovement.objects.bulk_create(
        StockMovement(
            stock_item_id=reservation.stock_item_id,
            kind=StockMovement.Kind.SHIP,
            on_hand_delta=-reservation.quantity,
            reserved_delta=-reservation.quantity,
            reservation=reservation,
            reason=reason,
            actor=actor.user,
            request_id=actor.request_id,
        )
        for reservation in committed
    )
    deltas = [StockDelta(r.stock_item_id, -r.quantity, -r.quantity) for r in committed]
    if stock_counters_apply(deltas) != {d.stock_item_id for d in deltas}:
        raise RuntimeError("Stock counters disagree with held reservations")
    return quantity - left


def reservations_move_off_warehouse(
    *,
    order_line_ids: Sequence[int],
    warehouse_id: int,
    exclude_warehouse_ids: Iterable[int],
    actor: Actor,
    reason: str,
) -> list[Reservation]:
    """Move the lines' units held at one warehouse to others (not the excluded ones).

    All or nothing: raise InsufficientStock when the other warehouses cannot take it.
    Run inside a transaction. Return the new reservations.
    """
    excluded = {warehouse_id, *exclude_warehouse_ids}
    for _attempt in range(5):
        held = list(
            Reservation.objects.select_related("stock_item__product", "order_line")
            .filter(
                order_line_id__in=list(order_line_ids),
                stock_item__warehouse_id=warehouse_id,
                status=Reservation.Status.HELD,
            )
            .order_by("pk")
        )
        if not held:
            return []
        demand: dict[int, int] = defaultdict(int)
        line_by_product: dict[int, int] = {}
        skus: dict[int, str] = {}
        for reservation in held:
            product = reservation.stock_item.product
            demand[product.pk] += reservation.quantity
            line_by_product[product.pk] = reservation.order_line_id
            skus[product.pk] = product.sku
        plan = stock_plan(demand=dict(demand), skus=skus, exclude_warehouse_ids=excluded)
        try:
            with transaction.atomic():
                _reservations_settle(
                    order_line_ids=order_line_ids,
                    new_status=Reservation.Status.RELEASED,
                    kind=StockMovement.Kind.RELEASE,
                    ships=False,
                    actor=actor,
                    reason=reason,
                    warehouse_id=warehouse_id,
                )
                return stock_reserve(
                    requests=[
                        ReservationRequest(line_by_product[pid], pid, skus[pid], qty)
                        for pid, qty in demand.items()
                    ],
                    plan=plan,
                    expires_at=held[0].expires_at,
                    actor=actor,
                )
        except ReservationRaceLost:
            continue
    raise InsufficientStock(sorted(skus.values()))


def reservations_ship_released(
    *, order_line_ids: Iterable[int], warehouse_id: int, actor: Actor, reason: str
) -> list[Reservation]:
    """Units a warehouse reports shipped after their order was cancelled (and their
    reservation released) left all the same: take them off on_hand. Run inside a
    transaction. Raise StockConflict when the units still on hand are all reserved
    for other orders (the counters cannot go below what is reserved)."""
    released = list(
        Reservation.objects.filter(
            order_line_id__in=list(order_line_ids),
            stock_item__warehouse_id=warehouse_id,
            status=Reservation.Status.RELEASED,
        ).order_by("pk")
    )
    if not released:
        return []
    deltas = [StockDelta(r.stock_item_id, -r.quantity, 0) for r in released]
    if stock_counters_apply(deltas) != {d.stock_item_id for d in deltas}:
        raise StockConflict(
            "The shipped units are no longer on hand unreserved; count the stock by hand."
        )
    Reservation.objects.filter(pk__in=[r.pk for r in released]).update(
        status=Reservation.Status.COMMITTED, updated_at=timezone.now()
    )
    StockMovement.objects.bulk_create(
        StockMovement(
            stock_item_id=reservation.stock_item_id,
            kind=StockMovement.Kind.SHIP,
            on_hand_delta=-reservation.quantity,
            reservation=reservation,
            reason=reason,
            actor=actor.user,
            request_id=actor.request_id,
        )
        for reservation in released
    )
    return released


def stock_buckets_set(
    *, sku: str, warehouse_code: str, buckets: int, actor: Actor, reason: str = ""
) -> list[StockItem]:
    """Split a stock item over `buckets` rows (at least as many as it has: rows that the
    ledger and reservations name stay), then spread its unreserved units evenly over them
    (`stock_rebalance`). Return the buckets in bucket order."""
    product = Product.objects.filter(sku=sku).first()
    if product is None:
        raise NotFound(f"Unknown SKU '{sku}'.")
    warehouse = Warehouse.objects.filter(code=warehouse_code).first()
    if warehouse is None:
        raise NotFound(f"Unknown warehouse '{warehouse_code}'.")
    with transaction.atomic():
        existing = set(
            StockItem.objects.filter(product=product, warehouse=warehouse).values_list(
                "bucket", flat=True
            )
        )
        if buckets < max(len(existing), 1):
            raise ValueError(
                f"{sku} at {warehouse_code} has {len(existing)} buckets; they can be added, "
                "not removed (the ledger names each)."
            )
        StockItem.objects.bulk_create(
            [
                StockItem(product=product, warehouse=warehouse, bucket=bucket)
                for bucket in range(buckets)
                if bucket not in existing
            ],
            ignore_conflicts=True,
        )
        return stock_rebalance(
            sku=sku, warehouse_code=warehouse_code, actor=actor, reason=reason or "buckets"
        )


def stock_rebalance(
    *, sku: str, warehouse_code: str, actor: Actor, reason: str = ""
) -> list[StockItem]:
    """Spread a stock item's unreserved units evenly over its buckets: on_hand moves
    between buckets through `rebalance` ledger rows that sum to 0 (reserved units stay in
    the bucket that holds their reservation). Return the buckets in bucket order."""
    with transaction.atomic():
        buckets = list(
            StockItem.objects.filter(product__sku=sku, warehouse__code=warehouse_code)
            .order_by("pk")
            .select_for_update(no_key=True)
        )
        if not buckets:
            raise NotFound(f"No stock of '{sku}' at '{warehouse_code}'.")
        buckets.sort(key=lambda bucket: bucket.bucket)
        share, extra = divmod(sum(b.on_hand - b.reserved for b in buckets), len(buckets))
        deltas = [
            StockDelta(b.pk, b.reserved + share + (i < extra) - b.on_hand, 0)
            for i, b in enumerate(buckets)
        ]
        deltas = [delta for delta in deltas if delta.on_hand_delta]
        if stock_counters_apply(deltas) != {delta.stock_item_id for delta in deltas}:
            raise RuntimeError("Locked buckets refused a rebalance that keeps their rules")
        StockMovement.objects.bulk_create(
            StockMovement(
                stock_item_id=delta.stock_item_id,
                kind=StockMovement.Kind.REBALANCE,
                on_hand_delta=delta.on_hand_delta,
                reason=reason or "rebalance",
                actor=actor.user,
                request_id=actor.request_id,
            )
            for delta in deltas
        )
    return list(
        StockItem.objects.filter(product__sku=sku, warehouse__code=warehouse_code).order_by(
            "bucket"
        )
    )


def stock_return(
    *, product_id: int, warehouse_id: int, quantity: int, actor: Actor, reason: str
) -> StockMovement:
    """Put units a customer sent back on the shelf: on_hand += quantity, through a
    `return` movement. Run inside a transaction."""
    # A stock item split over buckets takes returns into its bucket 0.
    stock_item, _ = StockItem.objects.get_or_create(
        product_id=product_id, warehouse_id=warehouse_id, bucket=0
    )
    if stock_counters_apply([StockDelta(stock_item.pk, quantity, 0)]) != {stock_item.pk}:
        # Adding to on_hand always keeps reserved <= on_hand.
        raise RuntimeError("A return could not add to on_hand")
    movement = StockMovement.objects.create(
        stock_item=stock_item,
        kind=StockMovement.Kind.RETURN,
        on_hand_delta=quantity,
        reason=reason[:255],
        actor=actor.user,
        request_id=actor.request_id,
    )
    if Product.objects.filter(pk=product_id, backorder_limit__gt=0).exists():
        _backorders_on_receipt(
            product_id=product_id,
            warehouse_id=warehouse_id,
            receipt_movement_id=movement.pk,
            actor=actor,
        )
    return movement
