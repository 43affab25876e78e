"""Call the provider for a recorded operation and classify what happened."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from django.db.models import F

from payments.errors import ProviderCircuitOpen
from payments.gateways import base as gateway
from payments.gateways.stripe import StripeGateway
from payments.metrics import PAYMENT_OPERATIONS, PROVIDER_DURATION
from payments.models import PaymentOperation
from payments.provider import provider_call

logger = logging.getLogger(__name__)

T = TypeVar("T")


class OutcomeKind(Enum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"  # definite: nothing moved
    REJECTED = "rejected"  # definite 4xx: nothing moved
    UNKNOWN = "unknown"  # sent, outcome unknown: retry with the same key
    NOT_SENT = "not_sent"  # breaker open: nothing left this process


@dataclass(frozen=True)
class Outcome(Generic[T]):
    kind: OutcomeKind
    result: T | None = None
    error_code: str = ""
    message: str = ""


def operation_send(
    operation: PaymentOperation, call: Callable[[StripeGateway], T], *, counted: bool = False
) -> Outcome[T]:
    """Count the attempt, make the call outside any transaction, classify the outcome.
    `counted`: the attempt was counted when the operation was written (a paid checkout's
    statement writes it with attempts=1)."""
    if not counted:
        PaymentOperation.objects.filter(pk=operation.pk).update(attempts=F("attempts") + 1)
    started = time.perf_counter()
    outcome = _operation_call(operation, call)
    kind = str(operation.kind)
    PAYMENT_OPERATIONS.labels(kind=kind, outcome=outcome.kind.value).inc()
    if outcome.kind is not OutcomeKind.NOT_SENT:
        PROVIDER_DURATION.labels(kind=kind).observe(time.perf_counter() - started)
    return outcome


def _operation_call(operation: PaymentOperation, call: Callable[[StripeGateway], T]) -> Outcome[T]:
    try:
        return Outcome(OutcomeKind.SUCCEEDED, provider_call(call))
    except gateway.PaymentDeclined as error:
        return Outcome(
            OutcomeKind.DECLINED,
            error_code=error.decline_code or "card_declined",
            message=str(error),
        )
    except gateway.ProviderRequestRejected as error:
        # Stripe's own code (e.g. amount_too_large) when it gave one: operators read it.
        return Outcome(
            OutcomeKind.REJECTED, error_code=error.provider_code or "rejected", message=str(error)
        )
    except (gateway.OutcomeUnknown, gateway.ProviderUnavailable) as error:
        logger.warning("Payment operation %s: provider unavailable: %s", operation.pk, error)
        return Outcome(OutcomeKind.UNKNOWN, error_code="provider_unavailable", message=str(error))
    except ProviderCircuitOpen:
        return Outcome(
            OutcomeKind.NOT_SENT, error_code="circuit_open", message="circuit breaker open"
        )
