from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request

from core.datetimes import datetime_for_database
from core.errors import InvalidCursor


class CreatedAtCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request: Request) -> Cursor | None:
        """Reject a cursor that does not decode, or whose position is not an aware
        timestamp PostgreSQL can compare, as invalid; the position goes on in UTC.

        DRF passes the position to the queryset filter unchecked, so a forged one would
        fail there with a server error.
        """
        try:
            cursor = super().decode_cursor(request)
        except NotFound as error:
            raise InvalidCursor() from error
        if cursor is None or cursor.position is None:
            return cursor
        try:
            position = parse_datetime(str(cursor.position))
            if position is None:
                raise ValueError("not a timestamp")
            position = datetime_for_database(position)
        except ValueError as error:
            raise InvalidCursor() from error
        # DRF's stubs type the position as an int; it is the ordering field's value.
        return cursor._replace(position=position.isoformat())  # type: ignore[arg-type]
