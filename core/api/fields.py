"""Serializer fields whose errors never quote the value a client sent."""

from typing import Any

from rest_framework import serializers

from core.datetimes import datetime_for_database


class ChoiceField(serializers.ChoiceField):
    """A choice field whose error lists the allowed values instead of echoing the input
    (which may be anything, including text that cannot be encoded)."""

    default_error_messages = {"invalid_choice": "Must be one of: {choices}."}

    def to_internal_value(self, data: Any) -> Any:
        if data == "" and self.allow_blank:
            return ""
        try:
            return self.choice_strings_to_values[str(data)]
        except KeyError:
            self.fail("invalid_choice", choices=", ".join(self.choice_strings_to_values))


def _require_text(field: serializers.Field, data: Any) -> None:
    # DRF's text fields take numbers too (0 becomes "0"); the schema promises strings.
    if not isinstance(data, str):
        field.fail("invalid")


class IntegerField(serializers.IntegerField):
    """An integer sent as a JSON integer. DRF's own also takes "3", 3.0 and "5.00" (as 5):
    a money amount sent as "5.00" would otherwise mean 5 minor units."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class CharField(serializers.CharField):
    """A string field that takes JSON strings only."""

    def to_internal_value(self, data: Any) -> str:
        _require_text(self, data)
        return str(super().to_internal_value(data))


class RegexField(serializers.RegexField):
    def to_internal_value(self, data: Any) -> str:
        _require_text(self, data)
        return str(super().to_internal_value(data))


class SlugField(serializers.SlugField):
    def to_internal_value(self, data: Any) -> str:
        _require_text(self, data)
        return str(super().to_internal_value(data))


class EmailField(serializers.EmailField):
    def to_internal_value(self, data: Any) -> str:
        _require_text(self, data)
        return str(super().to_internal_value(data))


class UtcDateTimeField(serializers.DateTimeField):
    """An ISO 8601 datetime with a UTC offset, converted to UTC; no offset, an offset
    PostgreSQL refuses, or a date that overflows is a validation error."""

    def to_internal_value(self, value: Any) -> Any:
        if not isinstance(value, str):
            self.fail("invalid", format="ISO 8601 with a UTC offset")
        return super().to_internal_value(value)

    def enforce_timezone(self, value: Any) -> Any:
        try:
            return datetime_for_database(value)
        except ValueError as error:
            raise serializers.ValidationError(str(error), code="invalid") from error
