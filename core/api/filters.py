"""django-filter filters for values that reach the database."""

from datetime import datetime
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from core.datetimes import datetime_for_database


class DatabaseIsoDateTimeField(IsoDateTimeField):
    def to_python(self, value: Any) -> datetime | None:
        parsed: datetime | None = super().to_python(value)
        if parsed is None:
            return None
        try:
            return datetime_for_database(parsed)
        except ValueError as error:
            raise forms.ValidationError(str(error), code="out_of_range") from error


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 datetime filter that PostgreSQL can always compare: converted to UTC,
    odd offsets and dates that overflow refused as a validation error."""

    field_class = DatabaseIsoDateTimeField


class FilterForm(forms.Form):
    """The form of a FilterSet (Meta.form): a filter given with an empty value is an
    error, not a filter left out (the schema promises a value of its type)."""

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        for name in self.fields:
            if name in self.data and self.data.get(name) == "":
                self.add_error(name, forms.ValidationError("Give a value.", code="blank"))
        return cleaned
