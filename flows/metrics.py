"""Business metrics of the order use cases: checkouts by outcome, value placed, refunds."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from core.errors import DomainError

ORDERS_PLACED = Counter(
    "oms_orders_placed",
    "Checkouts, by outcome: created (the order exists and, with a payment method, is "
    "authorized), or the error code that ended it (insufficient_stock, payment_declined, "
    "unknown_sku, ...; `error` for an unexpected failure).",
    ["outcome"],
)
ORDER_VALUE_PLACED = Counter(
    "oms_order_value_placed_minor_units",
    "Total amount of the orders checkouts created, in minor units (counted when the order "
    "is created, whatever its payment does next; a resumed checkout adds nothing).",
    ["currency"],
)
# Resolves p50 and p99 anywhere between 10 ms and 5 s.
CHECKOUT_DURATION = Histogram(
    "oms_checkout_duration_seconds",
    "Time a checkout took (placing the order and, with a payment method, authorizing).",
    buckets=(
        0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
        1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0,
    ),
)  # fmt: skip
REFUNDS = Counter(
    "oms_refunds",
    "Refunds recorded (each partial refund counts), by currency.",
    ["currency"],
)
REFUND_AMOUNT = Counter(
    "oms_refund_amount_minor_units",
    "Amount refunded, in minor units, by currency.",
    ["currency"],
)


@dataclass
class CheckoutObservation:
    currency: str = ""
    total_amount: int = 0
    passed_on: bool = False

    def placed(self, *, currency: str, total_amount: int) -> None:
        self.currency = currency
        self.total_amount = total_amount

    def pass_on(self) -> None:
        """The checkout goes on elsewhere, observed there: count nothing here."""
        self.passed_on = True


@contextmanager
def checkout_observed() -> Iterator[CheckoutObservation]:
    """Time one checkout and count its outcome: `created` when the block ends normally,
    otherwise the error's code."""
    observation = CheckoutObservation()
    started = time.perf_counter()
    outcome: str | None = "created"
    try:
        yield observation
    except DomainError as error:
        outcome = error.code
        raise
    except Exception:
        outcome = "error"
        raise
    except BaseException:
        outcome = None
        raise
    finally:
        if not observation.passed_on:
            if outcome is not None:
                ORDERS_PLACED.labels(outcome=outcome).inc()
            CHECKOUT_DURATION.observe(time.perf_counter() - started)
            if observation.currency:
                ORDER_VALUE_PLACED.labels(currency=observation.currency).inc(
                    observation.total_amount
                )


def refund_observed(*, currency: str, amount: int) -> None:
    REFUNDS.labels(currency=currency).inc()
    REFUND_AMOUNT.labels(currency=currency).inc(amount)
