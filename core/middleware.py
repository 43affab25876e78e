import re
import time
import uuid
from typing import Any

from django.conf import settings
from django.contrib.messages import middleware as messages_middleware
from django.contrib.messages.storage import default_storage
from django.http import HttpRequest, HttpResponse
from django.middleware import common
from django.utils.deprecation import MiddlewareMixin
from django.utils.functional import SimpleLazyObject, empty

from core import log_context
from core.api.exceptions import PROBLEM_CONTENT_TYPE, not_found_view, problem_json_response
from core.errors import DomainError, LengthRequired, RequestTooLarge
from core.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_META = "HTTP_X_REQUEST_ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


# The middleware here are MiddlewareMixin's: they serve WSGI and ASGI alike, so an
# async view (a long poll, a stream) runs on the event loop rather than in a thread
# blocked on it.


class RequestIdMiddleware(MiddlewareMixin):
    """Tag each request with an id (the client's X-Request-ID when sane) and echo it."""

    def process_request(self, request: HttpRequest) -> None:
        # From META: request.headers would copy every header of the request first.
        supplied = request.META.get(_REQUEST_ID_META, "")
        request_id = supplied if _VALID_REQUEST_ID.match(supplied) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        log_context.bind(request_id=request_id, user="", order_id="")

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response[REQUEST_ID_HEADER] = request.request_id  # type: ignore[attr-defined]
        log_context.bind(request_id="", user="", order_id="")
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


class RequestMetricsMiddleware(MiddlewareMixin):
    """Count every answer by URL name (never the raw path: ids would make a series per
    order), method and status, and time it. A request that matched no URL is `unmatched`.
    A stream is timed until its response starts, not until it ends."""

    def process_request(self, request: HttpRequest) -> None:
        request.metrics_started = time.perf_counter()  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        started = getattr(request, "metrics_started", None)
        match = getattr(request, "resolver_match", None)
        route = (match.view_name or "unnamed") if match is not None else "unmatched"
        method = request.method if request.method in _KNOWN_METHODS else "other"
        counter = _counters.get((route, method, response.status_code))
        if counter is None:
            counter = _counters[(route, method, response.status_code)] = HTTP_REQUESTS.labels(
                route=route, method=method, status=str(response.status_code)
            )
        counter.inc()
        if started is not None:
            timer = _timers.get(route)
            if timer is None:
                timer = _timers[route] = HTTP_REQUEST_DURATION.labels(route=route)
            timer.observe(time.perf_counter() - started)
        return response


_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The labelled instruments, looked up once per label set (labels() takes a lock and builds
# its key on every call); as many as the series, which URL names bound.
_counters: dict[tuple[str, str, int], Any] = {}
_timers: dict[str, Any] = {}


class RequestBodyLimitMiddleware(MiddlewareMixin):
    """Refuse a body over REQUEST_BODY_MAX_BYTES (413) or of unknown length (411) before
    any view, parser or signature check reads it."""

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        refusal = request_body_refusal(request.META, settings.REQUEST_BODY_MAX_BYTES)
        if refusal is not None:
            return problem_json_response(refusal.to_problem())
        return None


class ProblemNotFoundMiddleware(MiddlewareMixin):
    """Answer every 404 as problem+json, under DEBUG too, where Django would render its
    HTML page for a URL that matches nothing (handler404 does the same otherwise)."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if response.status_code == 404 and not _is_json(response):
            return not_found_view(request)
        return response


def _is_json(response: HttpResponse) -> bool:
    content_type = response.get("Content-Type", "")
    return content_type.startswith(("application/json", PROBLEM_CONTENT_TYPE))


class CommonMiddleware(common.CommonMiddleware):
    """Django's, but a missing trailing slash is redirected for GET and HEAD only.

    A redirected POST turns into a GET in most clients (the body is lost, and a checkout
    would list orders instead), and under DEBUG Django raises instead; other methods get
    a 404 that names the endpoint (core.api.exceptions.not_found_view).
    """

    def should_redirect_with_slash(self, request: HttpRequest) -> bool:
        if request.method not in ("GET", "HEAD"):
            return False
        return bool(super().should_redirect_with_slash(request))


class MessageMiddleware(messages_middleware.MessageMiddleware):
    """Django's, but a request's message storage is built when the request first uses
    it (the admin does; the API never): building it imported the storage classes and
    made a cookie signer on every request (issue 11). A storage never used has nothing
    to store, as Django's `update()` finds too."""

    def process_request(self, request: HttpRequest) -> None:
        request._messages = SimpleLazyObject(lambda: default_storage(request))  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        messages = request.__dict__.get("_messages")
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response
        return super().process_response(request, response)
