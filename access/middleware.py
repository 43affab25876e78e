import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from access.policy import RateLimitClass, rule_for
from access.ratelimit import Usage, client_ip, key_subject, quotas_for, usage_count
from core.api.exceptions import problem_json_response
from core.errors import problem

logger = logging.getLogger(__name__)


class RateLimitMiddleware(MiddlewareMixin):
    """Count each API request against its endpoint's quotas (access.ratelimit); answer
    429 when one is used up, and tell the client where it stands on every answer.

    When the cache cannot be reached the request goes through (logged): an outage of
    the cache must not take the API down with it.
    """

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        usages: list[Usage] | None = getattr(request, "rate_limit_usages", None)
        if usages:
            for name, value in _headers(usages).items():
                response[name] = value
        return response

    def process_view(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        if not settings.RATE_LIMIT_ENABLED:
            return None
        match = request.resolver_match
        rule = rule_for(url_name=match.url_name if match else None, method=request.method or "")
        if rule is None or rule.rate_limit in (None, RateLimitClass.STREAMS):
            # Streams are bounded by how many are open at once (events.stream_slots).
            return None
        key = key_subject(request.META.get("HTTP_AUTHORIZATION", ""))
        subjects = {"ip": client_ip(request), "key": key or ""}
        try:
            usages = [
                usage_count(quota, subjects[quota.per])
                for quota in quotas_for(rule.rate_limit, with_key=key is not None)
            ]
        except Exception:
            logger.warning("Rate limit cache unavailable; request not counted", exc_info=True)
            return None
        request.rate_limit_usages = usages  # type: ignore[attr-defined]
        exceeded = [usage for usage in usages if usage.exceeded]
        if not exceeded:
            return None
        retry_after = max(usage.reset for usage in exceeded)
        names = ", ".join(usage.quota.name for usage in exceeded)
        body = problem(
            status=429,
            code="throttled",
            title="Too many requests",
            detail=f"Rate limit {names} used up; retry in {retry_after} s.",
        )
        response = problem_json_response(body)
        response["Retry-After"] = str(retry_after)
        return response


def _headers(usages: list[Usage]) -> dict[str, str]:
    return {
        "RateLimit-Policy": ", ".join(usage.quota.policy_item() for usage in usages),
        "RateLimit": ", ".join(usage.limit_item() for usage in usages),
    }
