"""Event delivery errors (raised inside workers; the outbox retries them), and the
refusals of the event log's API."""

from core.errors import DomainError


class EventDeliveryFailed(Exception):
    """A subscriber did not take an event (not a 2xx answer)."""


class EventDeliveriesIncomplete(Exception):
    """Some subscriber did not take the event; the outbox task retries the rest."""


class TooManyStreams(DomainError):
    code = "too_many_streams"
    status = 429
    title = "Too many open event streams"
