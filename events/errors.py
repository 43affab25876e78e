"""Event delivery errors and the refusals of the event log's API."""

from core.errors import DomainError


class EventDeliveryFailed(Exception):
    """A subscriber answered, but not 2xx (raised inside workers, recorded as an attempt)."""

    def __init__(self, status: int, excerpt: str) -> None:
        self.status = status
        self.excerpt = excerpt
        super().__init__(f"HTTP {status}")


class EventNotSubscribed(DomainError):
    code = "event_not_subscribed"
    status = 409
    title = "The subscription does not take events of this type"


class TooManyStreams(DomainError):
    code = "too_many_streams"
    status = 429
    title = "Too many open event streams"
