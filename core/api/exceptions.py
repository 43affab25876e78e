"""Render every API error as application/problem+json with a stable `code`."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import is_valid_path
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.errors import DomainError, RequestTooLarge, problem
from core.metrics import API_ERRORS

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

# DRF exception class -> (stable code, title).
_API_EXCEPTION_CODES: list[tuple[type[exceptions.APIException], str, str]] = [
    (exceptions.ParseError, "malformed_json", "Malformed request body"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type", "Unsupported media type"),
    (exceptions.NotAuthenticated, "not_authenticated", "Authentication required"),
    (exceptions.AuthenticationFailed, "authentication_failed", "Authentication failed"),
    (exceptions.PermissionDenied, "permission_denied", "Permission denied"),
    (exceptions.NotFound, "not_found", "Not found"),
    (exceptions.MethodNotAllowed, "method_not_allowed", "Method not allowed"),
    (exceptions.NotAcceptable, "not_acceptable", "Not acceptable"),
    (exceptions.Throttled, "throttled", "Too many requests"),
]


def _error_counted(body: dict[str, Any]) -> None:
    API_ERRORS.labels(code=str(body.get("code", "")), status=str(body["status"])).inc()


def problem_response(body: dict[str, Any], *, headers: dict[str, str] | None = None) -> Response:
    _error_counted(body)
    return Response(body, status=body["status"], headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def flatten_validation_errors(detail: Any, path: str = "") -> list[dict[str, str | None]]:
    """Turn DRF's nested error detail into [{field, code, detail}] with dotted paths."""
    if isinstance(detail, dict):
        errors: list[dict[str, str | None]] = []
        for name, value in detail.items():
            if name in ("non_field_errors", "__all__"):
                child = path
            elif isinstance(name, int):
                child = f"{path}[{name}]"
            else:
                child = f"{path}.{name}" if path else str(name)
            errors.extend(flatten_validation_errors(value, child))
        return errors
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [
                {
                    "field": path or None,
                    "code": getattr(item, "code", None) or "invalid",
                    "detail": str(item),
                }
                for item in detail
            ]
        errors = []
        for index, item in enumerate(detail):
            if item:
                errors.extend(flatten_validation_errors(item, f"{path}[{index}]"))
        return errors
    return [
        {
            "field": path or None,
            "code": getattr(detail, "code", None) or "invalid",
            "detail": str(detail),
        }
    ]


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    set_rollback()
    if isinstance(exc, RequestDataTooBig):
        # Django's own limit (DATA_UPLOAD_MAX_MEMORY_SIZE), should it ever be the lower.
        exc = RequestTooLarge()
    if isinstance(exc, DomainError):
        return problem_response(exc.to_problem(), headers=exc.headers() or None)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_validation_errors(exc.detail)
        summary = "; ".join(
            f"{error['field']}: {error['detail']}" if error["field"] else str(error["detail"])
            for error in errors[:5]
        )
        return problem_response(
            problem(
                status=400,
                code="validation_error",
                title="Invalid request",
                detail=summary or "The request is invalid.",
                errors=errors,
            )
        )
    if isinstance(exc, exceptions.APIException):
        code, title = exc.default_code, "Request failed"
        for exception_class, known_code, known_title in _API_EXCEPTION_CODES:
            if isinstance(exc, exception_class):
                code, title = known_code, known_title
                break
        headers: dict[str, str] = {}
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            headers["Retry-After"] = str(int(wait))
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        status = exc.status_code
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            view = context.get("view")
            request = context.get("request")
            www_authenticate = None
            if view is not None and request is not None:
                www_authenticate = view.get_authenticate_header(request)
            if www_authenticate:
                headers["WWW-Authenticate"] = www_authenticate
                status = 401
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem_response(
            problem(status=status, code=str(code), title=title, detail=str(detail)),
            headers=headers or None,
        )

    logger.exception("Unhandled error in API view", exc_info=exc)
    return problem_response(
        problem(
            status=500,
            code="internal_error",
            title="Internal server error",
            detail="An unexpected error occurred. It has been logged.",
        )
    )


def problem_json_response(
    body: dict[str, Any], *, headers: dict[str, str] | None = None
) -> JsonResponse:
    """A problem document as a plain Django response (outside DRF views)."""
    _error_counted(body)
    return JsonResponse(
        body, status=body["status"], headers=headers, content_type=PROBLEM_CONTENT_TYPE
    )


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """404 for any URL that matches nothing; names the endpoint a missing slash meant."""
    detail = "No such resource."
    path = request.path_info
    if not path.endswith("/") and is_valid_path(f"{path}/", getattr(request, "urlconf", None)):
        detail = (
            f"No such resource. The endpoint is {request.path}/ (with a trailing slash); "
            "send the request there."
        )
    return problem_json_response(
        problem(status=404, code="not_found", title="Not found", detail=detail)
    )


def server_error_view(request: HttpRequest) -> JsonResponse:
    return problem_json_response(
        problem(
            status=500,
            code="internal_error",
            title="Internal server error",
            detail="An unexpected error occurred. It has been logged.",
        )
    )
