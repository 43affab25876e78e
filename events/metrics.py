"""Webhook metrics: how long an order event took to reach a subscriber."""

from prometheus_client import Histogram

# From seconds (delivered on the first attempt) to hours (delivered on a retry).
WEBHOOK_DELIVERY_LAG = Histogram(
    "oms_webhook_delivery_lag_seconds",
    "Time from an order event's creation to its successful delivery to a subscriber "
    "(retries and waiting behind the order's earlier events included), by subscription.",
    ["subscription"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
)
