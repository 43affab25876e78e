"""Warehouse metrics: calls by operation and outcome."""

from prometheus_client import Counter

WAREHOUSE_CALLS = Counter(
    "oms_warehouse_calls",
    "Calls to warehouses, by operation (send, withdraw) and outcome (accepted, rejected, "
    "withdrawn, refused; unavailable, unknown, request_rejected, circuit_open, error).",
    ["operation", "outcome"],
)
