"""The one JSON parser of the API (DEFAULT_PARSER_CLASSES): nesting bounded by
JSON_MAX_DEPTH, lone surrogates refused, errors as problem+json."""

from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import parsers

from core.errors import MalformedJson
from core.json_input import json_loads_bounded


class JSONParser(parsers.JSONParser):
    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError as error:
            raise MalformedJson(f"The body is not {encoding} text: {error.reason}.") from error
        return json_loads_bounded(text, max_depth=settings.JSON_MAX_DEPTH)
