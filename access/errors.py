"""Access errors, each with a stable code. A missing, unknown, expired or revoked key is
DRF's 401 authentication_failed (core.api.exceptions)."""

from core.errors import DomainError


class OnBehalfOfNotAllowed(DomainError):
    code = "on_behalf_of_not_allowed"
    status = 403
    title = "This key may not act for customers"


class UnknownCustomer(DomainError):
    code = "unknown_customer"
    status = 422
    title = "OMS-On-Behalf-Of names no active customer"


class ApiKeyNotActive(DomainError):
    code = "api_key_not_active"
    status = 409
    title = "The API key is expired or revoked"


class TransitionNotAllowed(DomainError):
    code = "transition_not_allowed"
    status = 403
    title = "Your staff role may not take this transition"
