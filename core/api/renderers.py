"""The API's JSON renderer: UTF-8, and safe for any string the response carries."""

from collections.abc import Mapping
from typing import Any

from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    """Render UTF-8 JSON; a string UTF-8 cannot encode (a lone surrogate an error
    message quotes, say) makes the whole document ASCII with \\uXXXX escapes instead of
    a server error."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return _ASCII_RENDERER.render(data, accepted_media_type, renderer_context)


class _AsciiJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True


_ASCII_RENDERER = _AsciiJSONRenderer()
