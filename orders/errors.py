"""Order errors, each with a stable code."""

from core.errors import DomainError


class InvalidTransition(DomainError):
    code = "invalid_transition"
    status = 409
    title = "Transition not allowed"

    def __init__(self, *, transition: str, current_status: str, why: str = "") -> None:
        detail = f"Cannot {transition} an order in status '{current_status}'"
        super().__init__(
            f"{detail}: {why}." if why else f"{detail}.",
            transition=transition,
            current_status=current_status,
        )


class CurrencyMismatch(DomainError):
    code = "currency_mismatch"
    status = 422
    title = "All products in an order must share one currency"
