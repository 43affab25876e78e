"""The checkout body validated without DRF's field machinery, when it is valid.

OrderCreateInputSerializer defines the checkout body: the OpenAPI schema and every error
answer come from it. Running it costs 1,650-1,900 Python calls per checkout, most of them
DRF copying the declared fields for each request. checkout_input_lean (about 100 calls)
applies the same rules, read once from the serializer's declared fields, and returns
exactly the serializer's validated data; for a body it does not take (any error, any
type DRF would refuse) it returns None and checkout_input runs the serializer, whose
errors are the answer. tests/orders/test_checkout_input.py holds the two equal on generated bodies.
"""

import re
from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import (
    BaseValidator,
    MaxLengthValidator,
    MaxValueValidator,
    MinLengthValidator,
    MinValueValidator,
    ProhibitNullCharactersValidator,
)
from rest_framework import serializers
from rest_framework.fields import SkipField
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from core.api import fields
from flows.api.serializers import OrderCreateInputSerializer

# What ProhibitNullCharactersValidator and ProhibitSurrogateCharactersValidator refuse.
_NUL_OR_SURROGATE = re.compile("[\x00\ud800-\udfff]")
# Bounds checked inline; a field's other validators are called as they are.
_INLINE = (
    MaxLengthValidator,
    MinLengthValidator,
    MaxValueValidator,
    MinValueValidator,
    ProhibitNullCharactersValidator,
    ProhibitSurrogateCharactersValidator,
)
# An integer outside this is not taken here (DRF refuses more than 4,300 digits).
_INTEGER_LIMIT = 10**18


class _NotTaken(Exception):
    """The body is not one this path takes: the serializer decides."""


def _limits(field: serializers.Field, kind: type[BaseValidator]) -> list[Any]:
    return [validator.limit_value for validator in field.validators if isinstance(validator, kind)]


def _checks(field: serializers.Field) -> list[Any]:
    return [validator for validator in field.validators if not isinstance(validator, _INLINE)]


class _Text:
    """A JSON string, trimmed, blank only where allowed, within its length, without NUL
    or a lone surrogate, then the field's own validators (a regex, an email address)."""

    def __init__(self, field: serializers.CharField) -> None:
        self.trim = field.trim_whitespace
        self.allow_blank = field.allow_blank
        self.max_length = min(_limits(field, MaxLengthValidator), default=None)
        self.min_length = max(_limits(field, MinLengthValidator), default=0)
        self.checks = _checks(field)

    def clean(self, value: Any) -> str:
        if type(value) is not str:
            raise _NotTaken
        if self.trim:
            value = value.strip()
        if not value:
            if self.allow_blank:  # DRF returns "" before any validator runs
                return ""
            raise _NotTaken
        if self.max_length is not None and len(value) > self.max_length:
            raise _NotTaken
        if len(value) < self.min_length or _NUL_OR_SURROGATE.search(value):
            raise _NotTaken
        for check in self.checks:
            check(value)
        return value


class _Integer:
    """A JSON integer (not a boolean) within the field's bounds."""

    def __init__(self, field: serializers.IntegerField) -> None:
        self.min_value = max(_limits(field, MinValueValidator), default=-_INTEGER_LIMIT)
        self.max_value = min(_limits(field, MaxValueValidator), default=_INTEGER_LIMIT)
        self.checks = _checks(field)

    def clean(self, value: Any) -> int:
        if type(value) is not int or not self.min_value <= value <= self.max_value:
            raise _NotTaken
        for check in self.checks:
            check(value)
        return value


class _List:
    """A JSON array of the child's values, within the field's length."""

    def __init__(self, field: serializers.ListField) -> None:
        self.item = _rule(field.child)
        self.min_length = max(_limits(field, MinLengthValidator), default=0)
        self.max_length = min(_limits(field, MaxLengthValidator), default=None)
        if not field.allow_empty:
            self.min_length = max(self.min_length, 1)
        self.checks = _checks(field)

    def clean(self, value: Any) -> list[Any]:
        if type(value) is not list or len(value) < self.min_length:
            raise _NotTaken
        if self.max_length is not None and len(value) > self.max_length:
            raise _NotTaken
        items = [self.item.clean(item) for item in value]
        for check in self.checks:
            check(items)
        return items


class _Object:
    """A JSON object: each declared field in order, absent ones required or defaulted,
    then the serializer's validate_<field> method; other keys are ignored, as DRF
    ignores them."""

    def __init__(self, serializer: serializers.Serializer) -> None:
        overridden = [
            name
            for name in ("run_validation", "to_internal_value", "validate")
            if getattr(type(serializer), name) is not getattr(serializers.Serializer, name)
        ]
        if overridden or serializer.validators:
            raise TypeError(f"{type(serializer).__name__} validates as a whole: {overridden}")
        self.fields = [
            (name, field, _rule(field), getattr(serializer, f"validate_{name}", None))
            for name, field in serializer.fields.items()
        ]

    def clean(self, value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise _NotTaken
        validated = {}
        for name, field, rule, validate_method in self.fields:
            item: Any
            if name in value:
                item = rule.clean(value[name])
            elif field.required:
                raise _NotTaken
            else:
                try:
                    item = field.get_default()
                except SkipField:  # no default: left out
                    continue
            validated[name] = item if validate_method is None else validate_method(item)
        return validated


_Rule = _Text | _Integer | _List | _Object
_TEXT_FIELDS = (fields.CharField, fields.RegexField, fields.EmailField)


def _rule(field: serializers.Field) -> _Rule:
    """The rule for a declared field, for the field kinds the checkout body has."""
    if field.read_only or field.source != field.field_name:
        raise TypeError(f"{field.field_name}: read-only or sourced fields are not handled")
    # Exact classes: a subclass may take or turn values otherwise.
    if type(field) in _TEXT_FIELDS:
        return _Text(cast(serializers.CharField, field))
    if type(field) is fields.IntegerField:
        return _Integer(cast(serializers.IntegerField, field))
    if type(field) is serializers.ListField:
        return _List(field)
    if isinstance(field, serializers.Serializer):
        return _Object(field)
    raise TypeError(f"{field.field_name}: no lean rule for {type(field).__name__}")


_CHECKOUT = _Object(OrderCreateInputSerializer())


def checkout_input_lean(body: Any) -> dict[str, Any] | None:
    """OrderCreateInputSerializer's validated data for the body, or None where this path
    does not take it (the serializer then decides, and answers any error)."""
    try:
        return _CHECKOUT.clean(body)
    except (_NotTaken, DjangoValidationError, serializers.ValidationError):
        return None


def checkout_input(body: Any) -> dict[str, Any]:
    """The validated checkout body; raise the serializer's ValidationError for a body
    it refuses."""
    validated = checkout_input_lean(body)
    if validated is None:
        serializer = OrderCreateInputSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        validated = dict(serializer.validated_data)
    return validated
