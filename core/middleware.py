import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from core.api.exceptions import problem_json_response
from core.errors import DomainError, LengthRequired, RequestTooLarge

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestIdMiddleware:
    """Tag each request with an id (the client's X-Request-ID when sane) and echo it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = supplied if _VALID_REQUEST_ID.match(supplied) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


def request_body_refusal(meta: dict[str, object], max_bytes: int) -> DomainError | None:
    """Why a request's body is refused before anything reads it, or None.

    The size is known from Content-Length alone; a chunked body (no length up front)
    could only be measured by reading it, so it is refused too.
    """
    transfer_encoding = str(meta.get("HTTP_TRANSFER_ENCODING") or "").strip().lower()
    if transfer_encoding and transfer_encoding != "identity":
        return LengthRequired()
    content_length = str(meta.get("CONTENT_LENGTH") or "").strip()
    if not content_length:
        return None
    if not content_length.isascii() or not content_length.isdigit():
        return LengthRequired("The Content-Length header is not a number of bytes.")
    if int(content_length) > max_bytes:
        return RequestTooLarge(f"A request body may be at most {max_bytes} bytes.")
    return None


class RequestBodyLimitMiddleware:
    """Refuse a body over REQUEST_BODY_MAX_BYTES (413) or of unknown length (411) before
    any view, parser or signature check reads it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = request_body_refusal(request.META, settings.REQUEST_BODY_MAX_BYTES)
        if refusal is not None:
            return problem_json_response(refusal.to_problem())
        return self.get_response(request)

