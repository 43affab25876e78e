"""Decode JSON from outside with bounded nesting.

Python's decoder recurses once per nested array or object, so a body nested a thousand
levels deep would otherwise end in a RecursionError (a server error). The limit is
checked on the decoded value without recursion.
"""

import json
import re
from typing import Any

from core.errors import JsonTooDeep, MalformedJson

_SURROGATE = re.compile("[\ud800-\udfff]")


def json_check(value: Any, *, max_depth: int, allow_lone_surrogates: bool) -> None:
    """Raise JsonTooDeep when arrays and objects nest deeper than max_depth, and
    MalformedJson for a lone UTF-16 surrogate (not text) unless allowed."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            depth += 1
            if depth > max_depth:
                raise _too_deep(max_depth)
            for key, child in item.items():
                _check_text(key, allow_lone_surrogates)
                pending.append((child, depth))
        elif isinstance(item, list):
            depth += 1
            if depth > max_depth:
                raise _too_deep(max_depth)
            pending.extend((child, depth) for child in item)
        elif isinstance(item, str):
            _check_text(item, allow_lone_surrogates)


def json_loads_bounded(
    raw: bytes | str, *, max_depth: int, allow_lone_surrogates: bool = False
) -> Any:
    """Decode `raw` (strict JSON: no NaN or Infinity); raise MalformedJson when it is
    not JSON, JsonTooDeep when it nests deeper than max_depth."""
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError as error:
        raise _too_deep(max_depth) from error
    except ValueError as error:
        raise MalformedJson(f"JSON parse error: {_describe(error)}") from error
    json_check(value, max_depth=max_depth, allow_lone_surrogates=allow_lone_surrogates)
    return value


def _too_deep(max_depth: int) -> JsonTooDeep:
    return JsonTooDeep(f"Arrays and objects may nest at most {max_depth} levels deep.")


def _check_text(text: str, allow_lone_surrogates: bool) -> None:
    if not allow_lone_surrogates and not text.isascii() and _SURROGATE.search(text):
        raise MalformedJson(
            "A string holds a lone UTF-16 surrogate escape (such as \\ud800), which is "
            "not text; send valid Unicode."
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _describe(error: ValueError) -> str:
    # JSONDecodeError and UnicodeDecodeError messages name positions and byte values,
    # never the text around them.
    return str(error)
