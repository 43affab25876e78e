"""inventory.allocation is pure: no database, plain data in and out."""

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from inventory.allocation import (
    EXACT_SEARCH_MAX_WAREHOUSES,
    Allocation,
    StockCandidate,
    allocate,
    short_products,
)


def candidate(
    warehouse_id: int,
    product_id: int,
    available: int,
    *,
    priority: int = 0,
    code: str | None = None,
) -> StockCandidate:
    return StockCandidate(
        stock_item_id=warehouse_id * 1000 + product_id,
        product_id=product_id,
        warehouse_id=warehouse_id,
        warehouse_priority=priority,
        warehouse_code=code or f"wh-{warehouse_id:03d}",
        available=available,
    )


def warehouses_of(plan: list[Allocation]) -> set[int]:
    return {allocation.warehouse_id for allocation in plan}


def quantities_by_product(plan: list[Allocation]) -> dict[int, int]:
    totals: dict[int, int] = defaultdict(int)
    for allocation in plan:
        totals[allocation.product_id] += allocation.quantity
    return dict(totals)


def test_empty_demand_needs_no_stock():
    assert allocate({}, []) == []


def test_single_warehouse_with_highest_priority_is_preferred():
    candidates = [
        candidate(1, 10, 5, priority=1),
        candidate(2, 10, 5, priority=9),
        candidate(3, 10, 5, priority=5),
    ]

    plan = allocate({10: 3}, candidates)

    assert plan == [Allocation(2 * 1000 + 10, 10, 2, 3)]


def test_equal_priority_breaks_ties_by_warehouse_code():
    candidates = [
        candidate(1, 10, 5, code="zulu"),
        candidate(2, 10, 5, code="alpha"),
    ]

    plan = allocate({10: 2}, candidates)

    assert plan is not None
    assert warehouses_of(plan) == {2}


def test_one_warehouse_holding_everything_beats_a_higher_priority_split():
    candidates = [
        candidate(1, 10, 2, priority=9),
        candidate(1, 20, 2, priority=9),
        candidate(2, 10, 5, priority=0),
        candidate(2, 20, 5, priority=0),
    ]

    plan = allocate({10: 3, 20: 1}, candidates)

    assert plan is not None
    assert warehouses_of(plan) == {2}
    assert quantities_by_product(plan) == {10: 3, 20: 1}


def test_split_uses_fewest_warehouses():
    # Warehouse 1 (highest priority) holds little; 3 and 4 together cover the order,
    # while any split including 1 or 2 needs three warehouses.
    candidates = [
        candidate(1, 10, 1, priority=9),
        candidate(2, 20, 1, priority=8),
        candidate(3, 10, 6, priority=1),
        candidate(4, 20, 6, priority=0),
    ]

    plan = allocate({10: 5, 20: 5}, candidates)

    assert plan is not None
    assert warehouses_of(plan) == {3, 4}
    assert quantities_by_product(plan) == {10: 5, 20: 5}


def test_split_of_one_product_takes_higher_priority_warehouse_first():
    candidates = [
        candidate(1, 10, 6, priority=5),
        candidate(2, 10, 4, priority=1),
    ]

    plan = allocate({10: 8}, candidates)

    assert plan == [
        Allocation(1 * 1000 + 10, 10, 1, 6),
        Allocation(2 * 1000 + 10, 10, 2, 2),
    ]


def test_impossible_demand_returns_none():
    candidates = [candidate(1, 10, 3), candidate(2, 10, 3), candidate(1, 20, 9)]

    assert allocate({10: 7}, candidates) is None
    assert allocate({10: 1, 30: 1}, candidates) is None
    assert short_products({10: 7, 20: 9, 30: 1}, candidates) == [10, 30]


def test_empty_and_negative_availability_is_ignored():
    candidates = [candidate(1, 10, 0, priority=9), candidate(2, 10, -3), candidate(3, 10, 2)]

    assert allocate({10: 2}, candidates) == [Allocation(3 * 1000 + 10, 10, 3, 2)]
    assert allocate({10: 3}, candidates) is None
    assert short_products({10: 3}, candidates) == [10]


def test_many_warehouses_use_the_greedy_cover():
    count = EXACT_SEARCH_MAX_WAREHOUSES + 3
    # One unit per warehouse: the demand needs ten of them; the last warehouse holds
    # five, so a good cover takes it plus five single-unit ones.
    candidates = [candidate(w, 10, 1, priority=count - w) for w in range(1, count)]
    candidates.append(candidate(count, 10, 5, priority=0))

    plan = allocate({10: 10}, candidates)

    assert plan is not None
    assert quantities_by_product(plan) == {10: 10}
    assert count in warehouses_of(plan)
    assert len(warehouses_of(plan)) == 6


def test_greedy_cover_returns_none_when_stock_is_short():
    count = EXACT_SEARCH_MAX_WAREHOUSES + 2
    candidates = [candidate(w, 10, 1) for w in range(1, count + 1)]

    assert allocate({10: count + 1}, candidates) is None
    plan = allocate({10: count}, candidates)
    assert plan is not None
    assert len(warehouses_of(plan)) == count


@st.composite
def stock_and_demand(draw: st.DrawFn) -> tuple[dict[int, int], list[StockCandidate]]:
    warehouse_count = draw(st.integers(1, EXACT_SEARCH_MAX_WAREHOUSES + 4))
    product_ids = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4, unique=True))
    candidates = []
    for warehouse_id in range(1, warehouse_count + 1):
        priority = draw(st.integers(-2, 3))
        for product_id in product_ids:
            if draw(st.booleans()):
                available = draw(st.integers(-1, 8))
                candidates.append(candidate(warehouse_id, product_id, available, priority=priority))
    demanded = draw(st.lists(st.sampled_from(product_ids), min_size=1, unique=True))
    demand = {pid: draw(st.integers(1, 20)) for pid in demanded}
    return demand, candidates


@settings(max_examples=300, deadline=None, database=None)
@given(stock_and_demand())
def test_any_plan_covers_demand_exactly_within_availability(
    case: tuple[dict[int, int], list[StockCandidate]],
) -> None:
    demand, candidates = case
    by_item = {c.stock_item_id: c for c in candidates}

    plan = allocate(demand, candidates)

    if plan is None:
        # Both the exact search and the greedy cover find a plan whenever the total
        # stock suffices.
        assert short_products(demand, candidates) != []
        return
    assert short_products(demand, candidates) == []
    assert quantities_by_product(plan) == demand
    taken: dict[int, int] = defaultdict(int)
    for allocation in plan:
        source = by_item[allocation.stock_item_id]
        assert allocation.quantity > 0
        assert (allocation.product_id, allocation.warehouse_id) == (
            source.product_id,
            source.warehouse_id,
        )
        taken[allocation.stock_item_id] += allocation.quantity
    for stock_item_id, quantity in taken.items():
        assert quantity <= by_item[stock_item_id].available


@settings(max_examples=200, deadline=None, database=None)
@given(stock_and_demand())
def test_single_warehouse_is_used_whenever_one_suffices(
    case: tuple[dict[int, int], list[StockCandidate]],
) -> None:
    demand, candidates = case
    complete = {
        c.warehouse_id
        for c in candidates
        if all(
            any(
                o.warehouse_id == c.warehouse_id and o.product_id == pid and o.available >= qty
                for o in candidates
            )
            for pid, qty in demand.items()
        )
    }

    plan = allocate(demand, candidates)

    if complete:
        assert plan is not None
        chosen = warehouses_of(plan)
        assert len(chosen) == 1
        best = min(
            (c for c in candidates if c.warehouse_id in complete),
            key=lambda c: (-c.warehouse_priority, c.warehouse_code),
        )
        assert chosen == {best.warehouse_id}
