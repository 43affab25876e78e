"""The one permission class of the API: it applies access.policy's table."""

from typing import Any

from django.contrib.auth.models import User
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from access.api.authentication import ON_BEHALF_OF_HEADER, ApiKeyCredential
from access.errors import OnBehalfOfNotAllowed, UnknownCustomer
from access.policy import rule_allows, rule_for
from access.roles import Role, roles_of
from access.scopes import ALL_SCOPES
from access.selectors import customer_for_header
from core import log_context

_ALL_SCOPES = frozenset(ALL_SCOPES)
_CUSTOMER = frozenset({Role.CUSTOMER.value})
# Read from META: request.headers would copy every header of the request first.
_ON_BEHALF_OF_META = "HTTP_" + ON_BEHALF_OF_HEADER.upper().replace("-", "_")


class PolicyPermission(BasePermission):
    """Allow what access.policy.RULES allows; an endpoint without a rule allows nobody.

    Anonymous callers get 401 (DRF turns a refusal into NotAuthenticated); a key naming
    a customer in OMS-On-Behalf-Of acts as that customer, if it may. OPTIONS (metadata)
    and methods the view does not implement (405) are left to DRF.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not isinstance(user, User) or not user.is_active:
            return False
        method = (request.method or "").lower()
        if method == "options" or not hasattr(view, method):
            return True  # metadata, or DRF's 405 for a method the view does not take
        credential = request.auth if isinstance(request.auth, ApiKeyCredential) else None
        log_context.bind(user=user.get_username())
        roles = self._roles(request, user, credential)
        scopes = credential.scopes if credential is not None else _ALL_SCOPES
        match = request.resolver_match
        rule = rule_for(url_name=match.url_name if match else None, method=request.method or "")
        return rule is not None and rule_allows(rule, scopes=scopes, roles=roles)

    @staticmethod
    def _roles(request: Request, user: User, credential: ApiKeyCredential | None) -> frozenset[str]:
        named = request.META.get(_ON_BEHALF_OF_META)
        if named is None:
            return roles_of(user)
        if credential is None or not credential.api_key.act_as_customer:
            raise OnBehalfOfNotAllowed(
                f"{ON_BEHALF_OF_HEADER} needs a key with the act_as_customer capability."
            )
        if credential.on_behalf_of is None:
            customer = customer_for_header(named)
            if customer is None:
                raise UnknownCustomer()
            credential.on_behalf_of = customer
        return _CUSTOMER
