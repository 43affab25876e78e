"""Order metrics: transitions of the state machine."""

from prometheus_client import Counter

ORDER_TRANSITIONS = Counter(
    "oms_order_transitions",
    "Order transitions committed, by the status left and the status reached.",
    ["from_status", "to_status"],
)
