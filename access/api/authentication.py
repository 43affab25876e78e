"""DRF authentication with API keys.

`Authorization: Bearer <key>` is the scheme; `Authorization: Token <key>`, the old
plaintext tokens' scheme, is accepted for any key until its announced removal (see the
README). The credential DRF keeps as `request.auth` carries the key's scopes and, once
the permission check resolved OMS-On-Behalf-Of, the customer the key acts for (read by
core.actors.Actor).
"""

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import HTTP_HEADER_ENCODING, exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from access.models import ApiKey
from access.services import api_key_authenticate

SCHEMES = ("bearer", "token")
ON_BEHALF_OF_HEADER = "OMS-On-Behalf-Of"


@dataclass
class ApiKeyCredential:
    api_key: ApiKey
    scopes: frozenset[str] = field(default_factory=frozenset)
    on_behalf_of: User | None = None


def presented_key(request: Request) -> str | None:
    """The key in the Authorization header, or None when it holds none of our schemes."""
    # From META, not DRF's get_authorization_header: request.headers would copy every
    # header of the request first.
    header = request.META.get("HTTP_AUTHORIZATION", b"")
    if isinstance(header, str):
        header = header.encode(HTTP_HEADER_ENCODING)
    parts = header.split()
    if not parts or parts[0].lower().decode(errors="replace") not in SCHEMES:
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed("Invalid Authorization header: one key expected.")
    try:
        return parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise exceptions.AuthenticationFailed("Invalid API key.") from None


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[User, ApiKeyCredential] | None:
        key = presented_key(request)
        if key is None:
            return None
        api_key, failure = api_key_authenticate(key)
        if api_key is None:
            raise exceptions.AuthenticationFailed(failure)
        return api_key.user, ApiKeyCredential(api_key=api_key, scopes=frozenset(api_key.scopes))

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class ApiKeySchema(OpenApiAuthenticationExtension):
    """The scheme in the OpenAPI document."""

    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "Authorization: Bearer <API key>. The old `Token <key>` scheme still works "
                "until its announced removal."
            ),
        }
