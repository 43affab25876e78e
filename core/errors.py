"""The domain's error hierarchy. Each error has a stable machine `code` and an HTTP status.

The API renders every one of them as application/problem+json (see core.api.exceptions).
"""

from typing import Any


def problem(*, status: int, code: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """Build an RFC 9457 problem document (JSON-serializable)."""
    return {
        "type": f"https://oms.example/problems/{code.replace('_', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


class DomainError(Exception):
    """A failure the client can understand and act on."""

    code: str = "domain_error"
    status: int = 400
    title: str = "Request could not be processed"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)

    def headers(self) -> dict[str, str]:
        """Extra HTTP response headers (e.g. Retry-After)."""
        return {}

    def to_problem(self) -> dict[str, Any]:
        return problem(
            status=self.status,
            code=self.code,
            title=self.title,
            detail=self.detail,
            **self.extra,
        )


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = "Not found"


class ConcurrentUpdate(DomainError):
    code = "concurrent_update"
    status = 409
    title = "The resource was changed by another request; retry"


class IdempotencyKeyMissing(DomainError):
    code = "idempotency_key_missing"
    status = 400
    title = "Idempotency-Key header is required"


class IdempotencyKeyInvalid(DomainError):
    code = "idempotency_key_invalid"
    status = 400
    title = "Idempotency-Key must be 1-255 printable ASCII characters"


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status = 422
    title = "Idempotency-Key was already used with a different request"


class RequestInProgress(DomainError):
    code = "request_in_progress"
    status = 409
    title = "A request with this Idempotency-Key is still being processed"


class RequestTooLarge(DomainError):
    code = "request_too_large"
    status = 413
    title = "The request body is larger than this API accepts"


class LengthRequired(DomainError):
    code = "length_required"
    status = 411
    title = "A request body needs a valid Content-Length (chunked bodies are not accepted)"


class MalformedJson(DomainError):
    code = "malformed_json"
    status = 400
    title = "Malformed request body"


class JsonTooDeep(DomainError):
    code = "json_too_deep"
    status = 400
    title = "The JSON body is nested too deeply"


class InvalidCursor(DomainError):
    code = "invalid_cursor"
    status = 400
    title = "The pagination cursor is not valid"
