"""Event delivery errors (raised inside workers; the outbox retries them)."""


class EventDeliveryFailed(Exception):
    """A subscriber did not take an event (not a 2xx answer)."""


class EventDeliveriesIncomplete(Exception):
    """Some subscriber did not take the event; the outbox task retries the rest."""
