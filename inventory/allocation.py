"""Choose which warehouses fulfil an order. Pure functions: no database access."""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

# Above this many candidate warehouses the exact fewest-warehouses search gives way
# to a greedy cover (the exact search is exponential in the warehouse count).
EXACT_SEARCH_MAX_WAREHOUSES = 12


@dataclass(frozen=True)
class StockCandidate:
    stock_item_id: int
    product_id: int
    warehouse_id: int
    warehouse_priority: int
    warehouse_code: str
    available: int


@dataclass(frozen=True)
class Allocation:
    stock_item_id: int
    product_id: int
    warehouse_id: int
    quantity: int


def short_products(demand: Mapping[int, int], candidates: Sequence[StockCandidate]) -> list[int]:
    """Products whose total availability over all candidates is below the demand."""
    totals: dict[int, int] = defaultdict(int)
    for candidate in candidates:
        totals[candidate.product_id] += max(candidate.available, 0)
    return sorted(pid for pid, qty in demand.items() if totals[pid] < qty)


def allocate(
    demand: Mapping[int, int], candidates: Sequence[StockCandidate]
) -> list[Allocation] | None:
    """Split `demand` (product id -> quantity) over warehouses.

    One warehouse when any can fulfil the whole order (highest priority first);
    otherwise the fewest warehouses that together can, preferring higher priority.
    None when the stock cannot cover the demand.
    """
    if not demand:
        return []
    by_warehouse: dict[int, dict[int, StockCandidate]] = defaultdict(dict)
    rank: dict[int, tuple[int, str]] = {}
    for candidate in candidates:
        if candidate.available <= 0 or candidate.product_id not in demand:
            continue
        by_warehouse[candidate.warehouse_id][candidate.product_id] = candidate
        rank[candidate.warehouse_id] = (-candidate.warehouse_priority, candidate.warehouse_code)
    warehouses = sorted(by_warehouse, key=rank.__getitem__)

    def covers(group: Sequence[int]) -> bool:
        return all(
            sum(by_warehouse[w][pid].available for w in group if pid in by_warehouse[w]) >= qty
            for pid, qty in demand.items()
        )

    if len(warehouses) <= EXACT_SEARCH_MAX_WAREHOUSES:
        for size in range(1, len(warehouses) + 1):
            for group in combinations(warehouses, size):
                if covers(group):
                    return _fill(demand, group, by_warehouse)
        return None
    return _greedy(demand, warehouses, by_warehouse)


def _fill(
    demand: Mapping[int, int],
    group: Sequence[int],
    by_warehouse: Mapping[int, Mapping[int, StockCandidate]],
) -> list[Allocation]:
    allocations: list[Allocation] = []
    for pid, qty in demand.items():
        remaining = qty
        for warehouse_id in group:
            candidate = by_warehouse[warehouse_id].get(pid)
            if candidate is None or remaining == 0:
                continue
            take = min(candidate.available, remaining)
            allocations.append(Allocation(candidate.stock_item_id, pid, warehouse_id, take))
            remaining -= take
    return allocations


def _greedy(
    demand: Mapping[int, int],
    warehouses: Sequence[int],
    by_warehouse: Mapping[int, Mapping[int, StockCandidate]],
) -> list[Allocation] | None:
    remaining = dict(demand)
    chosen: list[int] = []
    pool = list(warehouses)
    while any(remaining.values()) and pool:

        def coverage(warehouse_id: int) -> int:
            stock = by_warehouse[warehouse_id]
            return sum(
                min(stock[pid].available, qty) for pid, qty in remaining.items() if pid in stock
            )

        best = max(pool, key=coverage)  # max keeps the first (highest priority) on ties
        if coverage(best) == 0:
            break
        pool.remove(best)
        chosen.append(best)
        for pid in remaining:
            if pid in by_warehouse[best]:
                remaining[pid] -= min(by_warehouse[best][pid].available, remaining[pid])
    if any(remaining.values()):
        return None
    return _fill(demand, chosen, by_warehouse)
