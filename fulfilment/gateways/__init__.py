"""Adapters to warehouse fulfilment services: plain data in, plain data out, typed failures."""

from fulfilment.gateways.base import (
    Accepted,
    FulfilmentLine,
    FulfilmentRequest,
    FulfilmentResult,
    Rejected,
    WarehouseError,
    WarehouseGateway,
    WarehouseOutcomeUnknown,
    WarehouseRequestRejected,
    WarehouseUnavailable,
    Withdrawn,
    WithdrawRefused,
    WithdrawResult,
)
from fulfilment.gateways.http import HttpWarehouseGateway

__all__ = [
    "Accepted",
    "FulfilmentLine",
    "FulfilmentRequest",
    "FulfilmentResult",
    "HttpWarehouseGateway",
    "Rejected",
    "WarehouseError",
    "WarehouseGateway",
    "WarehouseOutcomeUnknown",
    "WarehouseRequestRejected",
    "WarehouseUnavailable",
    "WithdrawRefused",
    "WithdrawResult",
    "Withdrawn",
]
