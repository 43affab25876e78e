"""Payment provider metrics: operations by kind and outcome, provider latency, breaker."""

from prometheus_client import Counter, Histogram

from core.metrics import breaker_source
from payments.provider import payment_breaker

PAYMENT_OPERATIONS = Counter(
    "oms_payment_operations",
    "Payment provider calls, by operation kind (authorize, capture, void, refund, ...) and "
    "outcome (succeeded, declined, rejected, unknown, not_sent when the breaker is open).",
    ["kind", "outcome"],
)
PROVIDER_DURATION = Histogram(
    "oms_payment_provider_duration_seconds",
    "Time a payment provider call took, by operation kind (calls the breaker stopped "
    "are not timed).",
    ["kind"],
    buckets=(0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
)

# The payment breaker is reported by every process that serves /metrics, called or not.
breaker_source(payment_breaker)
