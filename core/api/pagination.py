from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request

from core.datetimes import datetime_for_database
from core.errors import InvalidCursor


class CreatedAtCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request: Request) -> int:
        """page_size must be a whole number from 1; above max_page_size it is capped."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        # Any run of ASCII digits is a whole number; a very long one is above the cap.
        digits = raw.lstrip("0") or "0"
        size = 0
        if raw.isascii() and raw.isdecimal():
            size = int(digits) if len(digits) <= 9 else self.max_page_size
        if size < 1:
            raise ValidationError(
                {
                    self.page_size_query_param: [
                        f"A whole number from 1 (at most {self.max_page_size} are returned)."
                    ]
                }
            )
        return min(size, self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters

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
