"""Serializer fields whose errors never quote the value a client sent."""

from typing import Any

from rest_framework import serializers


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

