"""GET /metrics: the Prometheus text exposition, for a scraper holding METRICS_TOKEN."""

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from core.api.exceptions import not_found_view, problem_json_response
from core.errors import problem
from core.metrics import CONTENT_TYPE, metrics_text


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Every metric, read at this moment. Without a configured METRICS_TOKEN the endpoint
    does not exist (404); without the token, or with another, 401."""
    token = settings.METRICS_TOKEN
    if not token:
        return not_found_view(request)
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not supplied.strip():
        return _unauthorized("not_authenticated", "Send Authorization: Bearer <METRICS_TOKEN>.")
    if not hmac.compare_digest(supplied.strip().encode(), token.encode()):
        return _unauthorized("authentication_failed", "That is not the metrics token.")
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE)


def _unauthorized(code: str, detail: str) -> HttpResponse:
    return problem_json_response(
        problem(status=401, code=code, title="Authentication required", detail=detail),
        headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
    )
