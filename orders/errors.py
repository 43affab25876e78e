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


class ReturnExceedsShipped(DomainError):
    code = "return_exceeds_shipped"
    status = 409
    title = "The return asks for more units than shipped and not yet returned"


class InvalidReturnTransition(DomainError):
    code = "invalid_return_transition"
    status = 409
    title = "Return transition not allowed"

    def __init__(self, *, transition: str, current_status: str) -> None:
        super().__init__(
            f"Cannot {transition} a return in status '{current_status}'.",
            transition=transition,
            current_status=current_status,
        )


class ReturnNotReturnable(DomainError):
    code = "order_not_returnable"
    status = 409
    title = "Only a shipped or delivered order can be returned"


class ReturnLineUnknown(DomainError):
    code = "return_line_unknown"
    status = 422
    title = "The return names a SKU the order does not have"


class OrderNotEditable(DomainError):
    code = "order_not_editable"
    status = 409
    title = "Only an order not yet routed (and without a payment in flight) can be edited"


class OrderChanged(DomainError):
    code = "order_changed"
    status = 409
    title = "The order changed since the edit was previewed: ask for a new preview"


class OrderEditInvalid(DomainError):
    code = "order_edit_invalid"
    status = 422
    title = "The edit changes nothing, or leaves the order without lines"


class OrderEditNeedsReauthorization(DomainError):
    code = "order_edit_needs_reauthorization"
    status = 409
    title = "The edit raises the order's total and no payment method is known: name one"
