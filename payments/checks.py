from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register


@register()
def reconcile_grace_exceeds_provider_timeouts(**kwargs: Any) -> list[CheckMessage]:
    """The reconciler must not judge a call that may still be in flight."""
    in_flight = settings.STRIPE_CONNECT_TIMEOUT_SECONDS + settings.STRIPE_READ_TIMEOUT_SECONDS
    if in_flight >= settings.PAYMENT_RECONCILE_GRACE_SECONDS:
        return [
            Warning(
                "PAYMENT_RECONCILE_GRACE_SECONDS should exceed the Stripe connect + read "
                f"timeouts ({in_flight:g} s): the reconciler could mark an operation that "
                "is still in flight as never sent.",
                id="payments.W001",
            )
        ]
    return []
