"""Fulfilment errors, each with a stable code."""

from core.errors import DomainError


class WarehousesUnavailable(Exception):
    """Some warehouse could not be reached: the routing task retries with backoff."""


class UnknownShipment(DomainError):
    code = "unknown_shipment"
    status = 404
    title = "No such shipment for this warehouse"


class ShipmentLinesInvalid(DomainError):
    code = "shipment_lines_invalid"
    status = 400
    title = "The shipped lines are not lines of the request still to ship"


class CallbackSignatureInvalid(DomainError):
    code = "callback_signature_invalid"
    status = 401
    title = "Callback signature missing, invalid or too old"


class OrderAtWarehouse(DomainError):
    code = "order_at_warehouse"
    status = 409
    title = "The order is already with the warehouse and can no longer be cancelled"


class WarehouseUnreachable(DomainError):
    code = "warehouse_unavailable"
    status = 503
    title = "A warehouse holding the order could not be reached; retry later"

    def __init__(self, detail: str | None = None, *, retry_after: int, **extra: object) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
