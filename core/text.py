"""Text that PostgreSQL can store, whatever a client or a provider sent.

PostgreSQL text and JSONB cannot hold NUL, and UTF-8 cannot encode a lone UTF-16
surrogate (JSON's "\\ud800" decodes to one in Python). Both are written out as their
visible escape (the six characters ``\\u0000``) instead.
"""

import hashlib
import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def text_storable(value: str) -> str:
    """Return the text with NUL and lone surrogates written as ``\\uXXXX`` escapes."""
    if value.isascii() and "\x00" not in value:
        return value
    return _UNSTORABLE.sub(_escape, value)


def json_storable(value: Any) -> Any:
    """Return decoded JSON with every string (keys too) made storable by text_storable."""
    if isinstance(value, str):
        return text_storable(value)
    if isinstance(value, dict):
        return {text_storable(str(key)): json_storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_storable(item) for item in value]
    return value


def text_fit(value: str, max_length: int) -> str:
    """Return the text unchanged when it is storable and fits in max_length characters;
    otherwise a storable prefix followed by ``~`` and the SHA-256 of the whole text.

    Equal inputs give equal results and different ones different results, so a column
    with a unique constraint still detects a repeat of an over-long or unstorable value.
    """
    if len(value) <= max_length and text_storable(value) == value:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    prefix_length = max(max_length - len(digest) - 1, 0)
    return f"{text_storable(value)[:prefix_length]}~{digest}"[-max_length:]
