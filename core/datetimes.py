"""Datetimes from outside (filters, cursors) made safe to hand to PostgreSQL."""

from datetime import UTC, datetime, timedelta

# PostgreSQL refuses a UTC offset of 16 hours or more; real zones stay within -12..+14.
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)


def datetime_for_database(value: datetime) -> datetime:
    """Return the aware datetime in UTC; raise ValueError, with a message for the client,
    when it has no offset or one beyond +-15:59, or lies outside years 1-9999 in UTC."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("A UTC offset (such as Z or +02:00) is required.")
    if abs(offset) > MAX_UTC_OFFSET:
        raise ValueError("The UTC offset must be between -15:59 and +15:59.")
    try:
        return value.astimezone(UTC)
    except OverflowError as error:
        raise ValueError("The date is out of range (years 1-9999 in UTC).") from error
