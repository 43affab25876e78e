"""Content negotiation: DRF's, with its choice remembered per Accept header.

DRF parses the Accept header and matches it against every renderer on each request
(about 40 Python calls; issue 11). The choice depends only on the renderers offered, the
format asked for (`?format=` or a suffix) and the Accept header, so it is kept per
combination: the renderer's position in the list and the media type. An Accept header
nothing can answer raises NotAcceptable as before and is not kept. Clients choose their
Accept headers, so at most `_MAX_KEPT` combinations are kept; others are negotiated on
every request, as DRF does.
"""

from collections.abc import Iterable
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

_MAX_KEPT = 512
_chosen: dict[tuple[Any, ...], tuple[int, str]] = {}


class ContentNegotiation(DefaultContentNegotiation):
    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderers = list(renderers)
        meta = request.META
        requested_format = format_suffix
        if not requested_format and meta.get("QUERY_STRING"):
            requested_format = request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        key = (
            requested_format,
            meta.get("HTTP_ACCEPT"),
            tuple(type(renderer) for renderer in renderers),
        )
        chosen = _chosen.get(key)
        if chosen is None:
            renderer, media_type = super().select_renderer(request, renderers, format_suffix)
            position = next(i for i, offered in enumerate(renderers) if offered is renderer)
            chosen = (position, media_type)
            if len(_chosen) < _MAX_KEPT:
                _chosen[key] = chosen
        position, media_type = chosen
        return renderers[position], media_type
