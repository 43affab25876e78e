"""The stock counters' one write rule: every change to StockItem.on_hand or reserved
that is not a reservation (inventory.services._RESERVE_SQL) goes through
`stock_counters_apply`, which keeps 0 <= reserved <= on_hand in the statement itself."""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone


@dataclass(frozen=True)
class StockDelta:
    stock_item_id: int
    on_hand_delta: int
    reserved_delta: int


_APPLY_DELTAS_SQL = """
WITH wanted AS (
    SELECT * FROM unnest(%s::bigint[], %s::integer[], %s::integer[])
        AS w(id, on_hand_delta, reserved_delta)
), locked AS MATERIALIZED (
    SELECT s.id FROM inventory_stockitem s
    WHERE s.id IN (SELECT id FROM wanted)
    ORDER BY s.id
    FOR NO KEY UPDATE
)
UPDATE inventory_stockitem s
SET on_hand = s.on_hand + w.on_hand_delta,
    reserved = s.reserved + w.reserved_delta,
    updated_at = %s
FROM wanted w JOIN locked l ON l.id = w.id
WHERE s.id = w.id
  AND s.reserved + w.reserved_delta >= 0
  AND s.on_hand + w.on_hand_delta >= s.reserved + w.reserved_delta
RETURNING s.id
"""


def stock_counters_apply(deltas: Sequence[StockDelta]) -> set[int]:
    """Apply counter deltas where the result keeps 0 <= reserved <= on_hand.

    Return the ids of the stock items that were updated; the caller compares them with
    what it asked for. Rows are locked in primary-key order so concurrent multi-row
    updates cannot deadlock. One statement.
    """
    merged: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for delta in deltas:
        merged[delta.stock_item_id][0] += delta.on_hand_delta
        merged[delta.stock_item_id][1] += delta.reserved_delta
    ids = sorted(merged)
    if not ids:
        return set()
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _APPLY_DELTAS_SQL,
            [ids, [merged[i][0] for i in ids], [merged[i][1] for i in ids], now],
        )
        return {row[0] for row in cursor.fetchall()}
