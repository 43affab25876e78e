"""Adapters to payment providers: plain data in, plain data out, typed failures."""

from payments.gateways.base import (
    GatewayError,
    IntentResult,
    OutcomeUnknown,
    PaymentDeclined,
    PaymentGateway,
    ProviderRequestRejected,
    ProviderUnavailable,
    RefundResult,
    WebhookSignatureInvalid,
)

__all__ = [
    "GatewayError",
    "IntentResult",
    "OutcomeUnknown",
    "PaymentDeclined",
    "PaymentGateway",
    "ProviderRequestRejected",
    "ProviderUnavailable",
    "RefundResult",
    "WebhookSignatureInvalid",
]
