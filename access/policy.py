"""Who may call each endpoint: THE table. The permission class, the rate limiter, the
README's endpoint table and the authorization tests all read it.

A request is allowed when the endpoint's scope is among the key's scopes (a browser
session has every scope) and the caller holds one of the endpoint's roles (see
access.roles). Customers reach only their own orders: the order selectors answer 404
for anyone else's. Endpoints marked `signed` take no key: the view checks the
request's signature itself.
"""

from dataclasses import dataclass

from access.roles import Role
from access.scopes import ALL_SCOPES, Scope

CUSTOMER = Role.CUSTOMER.value
SUPPORT = Role.SUPPORT.value
WAREHOUSE = Role.WAREHOUSE.value
FINANCE = Role.FINANCE.value
ADMIN = Role.ADMIN.value
SERVICE = Role.SERVICE.value
EVERYONE = frozenset({CUSTOMER, SUPPORT, WAREHOUSE, FINANCE, ADMIN})
STAFF = frozenset({SUPPORT, WAREHOUSE, FINANCE, ADMIN})


class RateLimitClass:
    """Which counters a request counts against (see access.ratelimit)."""

    READS = "reads"
    WRITES = "writes"
    CHECKOUT = "checkout"
    # Live streams: no request count; at most ORDER_EVENT_STREAMS_PER_USER open at once.
    STREAMS = "streams"


@dataclass(frozen=True)
class Rule:
    method: str
    path: str  # as documented, relative to /api/v1/
    url_name: str
    scope: str | None  # None: signed, no key
    roles: frozenset[str]
    rate_limit: str | None
    note: str = ""

    @property
    def signed(self) -> bool:
        return self.scope is None


def _rule(
    method: str,
    path: str,
    url_name: str,
    scope: Scope,
    roles: frozenset[str] | set[str],
    note: str = "",
    *,
    rate_limit: str | None = None,
) -> Rule:
    default_limit = RateLimitClass.READS if method == "GET" else RateLimitClass.WRITES
    return Rule(
        method, path, url_name, scope.value, frozenset(roles), rate_limit or default_limit, note
    )


def _signed(method: str, path: str, url_name: str, note: str) -> Rule:
    return Rule(method, path, url_name, None, frozenset(), None, note)


RULES: tuple[Rule, ...] = (
    _rule("GET", "/products/", "product-list", Scope.CATALOG_READ, EVERYONE),
    _rule("POST", "/products/", "product-list", Scope.CATALOG_WRITE, {WAREHOUSE}),
    _rule("GET", "/products/{sku}/", "product-detail", Scope.CATALOG_READ, EVERYONE),
    _rule("GET", "/warehouses/", "warehouse-list", Scope.STOCK_READ, {WAREHOUSE, SUPPORT}),
    _rule("POST", "/warehouses/", "warehouse-list", Scope.STOCK_WRITE, {WAREHOUSE}),
    _rule("GET", "/stock/", "stock-list", Scope.STOCK_READ, {WAREHOUSE, SUPPORT}),
    _rule("POST", "/stock/adjustments/", "stock-adjustment-create", Scope.STOCK_WRITE, {WAREHOUSE}),
    _rule("GET", "/orders/", "order-list", Scope.ORDERS_READ, EVERYONE, "customer: own orders"),
    _rule(
        "POST",
        "/orders/",
        "order-list",
        Scope.ORDERS_WRITE,
        {CUSTOMER},
        "checkout, for the caller (or the customer a key acts for)",
        rate_limit=RateLimitClass.CHECKOUT,
    ),
    _rule("GET", "/orders/{id}/", "order-detail", Scope.ORDERS_READ, EVERYONE, "customer: own"),
    _rule(
        "GET",
        "/orders/{id}/history/",
        "order-history",
        Scope.ORDERS_READ,
        EVERYONE,
        "customer: own",
    ),
    _rule(
        "POST",
        "/orders/{id}/pay/",
        "order-pay",
        Scope.ORDERS_WRITE,
        {CUSTOMER},
        "owner only: staff never pay with a customer's payment method",
        rate_limit=RateLimitClass.CHECKOUT,
    ),
    _rule(
        "POST",
        "/orders/{id}/cancel/",
        "order-cancel",
        Scope.ORDERS_WRITE,
        {CUSTOMER, SUPPORT},
        "customer: own",
    ),
    _rule(
        "POST",
        "/orders/{id}/cancel-rest/",
        "order-cancel-rest",
        Scope.ORDERS_WRITE,
        {SUPPORT},
        "a partially shipped order: what has not shipped",
    ),
    _rule("POST", "/orders/{id}/ship/", "order-ship", Scope.SHIPMENTS_WRITE, {WAREHOUSE}),
    _rule(
        "POST",
        "/orders/{id}/refund/",
        "order-refund",
        Scope.REFUNDS_WRITE,
        {SUPPORT, FINANCE},
        "all or part (`amount`) of what was captured",
    ),
    _rule(
        "POST",
        "/orders/{id}/transitions/",
        "order-transition",
        Scope.TRANSITIONS_WRITE,
        {SUPPORT, WAREHOUSE, FINANCE},
        "cancel, ship and refund: the roles of their own endpoints; any other: support",
    ),
    _rule(
        "POST",
        "/orders/{id}/edits/",
        "order-edit-list",
        Scope.ORDERS_WRITE,
        {CUSTOMER, SUPPORT},
        "customer: own; prices an edit of an order not yet routed",
    ),
    _rule(
        "GET",
        "/orders/{id}/edits/{edit_id}/",
        "order-edit-detail",
        Scope.ORDERS_READ,
        EVERYONE,
        "customer: own",
    ),
    _rule(
        "POST",
        "/orders/{id}/edits/{edit_id}/commit/",
        "order-edit-commit",
        Scope.ORDERS_WRITE,
        {CUSTOMER, SUPPORT},
        "customer: own; applies the edit, all or nothing (exactly once)",
    ),
    _rule(
        "GET",
        "/orders/{id}/returns/",
        "order-return-list",
        Scope.ORDERS_READ,
        EVERYONE,
        "customer: own",
    ),
    _rule(
        "POST",
        "/orders/{id}/returns/",
        "order-return-list",
        Scope.ORDERS_WRITE,
        {CUSTOMER, SUPPORT},
        "customer: own; units of a shipped or delivered order",
    ),
    _rule(
        "GET",
        "/orders/{id}/returns/{return_id}/",
        "order-return-detail",
        Scope.ORDERS_READ,
        EVERYONE,
        "customer: own",
    ),
    _rule(
        "POST",
        "/orders/{id}/returns/{return_id}/authorize/",
        "order-return-authorize",
        Scope.ORDERS_WRITE,
        {SUPPORT},
        "emails the customer what to send back",
    ),
    _rule(
        "POST",
        "/orders/{id}/returns/{return_id}/reject/",
        "order-return-reject",
        Scope.ORDERS_WRITE,
        {SUPPORT},
    ),
    _rule(
        "POST",
        "/orders/{id}/returns/{return_id}/cancel/",
        "order-return-cancel",
        Scope.ORDERS_WRITE,
        {CUSTOMER, SUPPORT},
        "customer: own",
    ),
    _rule(
        "POST",
        "/orders/{id}/returns/{return_id}/receive/",
        "order-return-receive",
        Scope.SHIPMENTS_WRITE,
        {SUPPORT, WAREHOUSE},
        "per line `restock` (default) or `dispose`; the refund follows on a worker",
    ),
    _rule(
        "POST",
        "/orders/{id}/returns/{return_id}/refund/",
        "order-return-refund",
        Scope.REFUNDS_WRITE,
        {SUPPORT, FINANCE},
        "a received return, now (exactly once)",
    ),
    _rule(
        "GET", "/orders/{id}/events/", "order-events", Scope.ORDERS_READ, EVERYONE, "customer: own"
    ),
    _rule(
        "GET",
        "/orders/{id}/stream/",
        "order-event-stream",
        Scope.ORDERS_READ,
        EVERYONE,
        "customer: own; server-sent events",
        rate_limit=RateLimitClass.STREAMS,
    ),
    _rule(
        "GET",
        "/events/",
        "event-feed",
        Scope.EVENTS_READ,
        {SUPPORT, ADMIN, SERVICE},
        "every order's events; a service account may read this and nothing else",
    ),
    _rule(
        "POST",
        "/event-subscriptions/{id}/redeliveries/",
        "event-subscription-redeliver",
        Scope.WEBHOOKS_WRITE,
        {SUPPORT, ADMIN},
        "one event (`event_id`) or every event since a time (`since`), again",
    ),
    _rule(
        "POST",
        "/event-subscriptions/{id}/enable/",
        "event-subscription-enable",
        Scope.WEBHOOKS_WRITE,
        {SUPPORT, ADMIN},
        "after it was disabled for failing",
    ),
    _rule(
        "GET",
        "/events/stream/",
        "event-feed-stream",
        Scope.EVENTS_READ,
        {SUPPORT, ADMIN, SERVICE},
        "every order's events as server-sent events",
        rate_limit=RateLimitClass.STREAMS,
    ),
    _rule(
        "GET",
        "/notification-preferences/",
        "notification-preferences",
        Scope.ORDERS_READ,
        {CUSTOMER},
        "the caller's own",
    ),
    _rule(
        "PATCH",
        "/notification-preferences/",
        "notification-preferences",
        Scope.ORDERS_WRITE,
        {CUSTOMER},
        "the caller's own",
    ),
    _rule("GET", "/api-keys/", "api-key-list", Scope.API_KEYS_READ, {ADMIN}),
    _rule(
        "POST", "/api-keys/", "api-key-list", Scope.API_KEYS_WRITE, {ADMIN}, "answers the key once"
    ),
    _rule("GET", "/api-keys/{id}/", "api-key-detail", Scope.API_KEYS_READ, {ADMIN}),
    _rule("DELETE", "/api-keys/{id}/", "api-key-detail", Scope.API_KEYS_WRITE, {ADMIN}, "revoke"),
    _rule(
        "POST",
        "/api-keys/{id}/rotate/",
        "api-key-rotate",
        Scope.API_KEYS_WRITE,
        {ADMIN},
        "a new key; the old one works until `old_key_expires_at`",
    ),
    _signed("POST", "/payments/stripe/webhook/", "stripe-webhook", "Stripe's signature"),
    _signed("POST", "/fulfilment/callbacks/", "fulfilment-callback", "the warehouse's signature"),
    _signed(
        "POST",
        "/notifications/unsubscribe/",
        "notifications-unsubscribe",
        "the signed link from an email",
    ),
)

_BY_ENDPOINT: dict[tuple[str, str], Rule] = {(rule.url_name, rule.method): rule for rule in RULES}


def rule_for(*, url_name: str | None, method: str) -> Rule | None:
    """The rule for this endpoint and method (HEAD as GET), or None when there is none."""
    if url_name is None:
        return None
    return _BY_ENDPOINT.get((url_name, "GET" if method == "HEAD" else method))


def rule_allows(rule: Rule, *, scopes: frozenset[str], roles: frozenset[str]) -> bool:
    return rule.scope is not None and rule.scope in scopes and bool(rule.roles & roles)


# The transitions endpoint takes any transition by name. A transition that has an endpoint
# of its own is allowed there to exactly the staff roles of that endpoint (ship is the
# warehouse's, refunds support's and finance's); every other transition is support's.
TRANSITION_ENDPOINTS: dict[str, tuple[str, str]] = {
    "cancel": ("POST", "order-cancel"),
    "ship": ("POST", "order-ship"),
    "refund": ("POST", "order-refund"),
}
OTHER_TRANSITION_ROLES = frozenset({SUPPORT})


def transition_allowed(transition: str, *, roles: frozenset[str]) -> bool:
    """Whether staff with these roles may take this transition by name."""
    endpoint = TRANSITION_ENDPOINTS.get(transition)
    allowed = (
        _BY_ENDPOINT[(endpoint[1], endpoint[0])].roles & STAFF
        if endpoint is not None
        else OTHER_TRANSITION_ROLES
    )
    return bool(allowed & roles)


# What staff do in the admin, each with the endpoints (method, url name) through which the
# API lets them do it. The admin offers an action exactly to the roles one of these
# endpoints admits (a browser session holds every scope), so the admin and the API read
# one table and cannot disagree. Order transitions are decided by transition_allowed.
STAFF_ACTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "order.refund_amount": (("POST", "order-refund"),),
    "order.refund_lines": (("POST", "order-refund"),),
    "order.cancel_rest": (("POST", "order-cancel-rest"),),
    "return.open": (("POST", "order-return-list"),),
    "return.authorize": (("POST", "order-return-authorize"),),
    "return.reject": (("POST", "order-return-reject"),),
    "return.cancel": (("POST", "order-return-cancel"),),
    "return.receive": (("POST", "order-return-receive"),),
    "return.refund": (("POST", "order-return-refund"),),
    "stock.view": (("GET", "stock-list"),),
    "stock.adjust": (("POST", "stock-adjustment-create"),),
}


def staff_action_allowed(action: str, *, roles: frozenset[str]) -> bool:
    """Whether a browser session with these roles may take a staff action: `order.<name>`
    for a transition, or a STAFF_ACTIONS entry."""
    if action not in STAFF_ACTIONS and action.startswith("order."):
        return transition_allowed(action.removeprefix("order."), roles=roles)
    scopes = frozenset(ALL_SCOPES)
    return any(
        rule_allows(_BY_ENDPOINT[(url_name, method)], scopes=scopes, roles=roles)
        for method, url_name in STAFF_ACTIONS[action]
    )


def markdown_table() -> str:
    """The README's endpoint table, generated from RULES."""
    role_order = [CUSTOMER, SUPPORT, WAREHOUSE, FINANCE, ADMIN, SERVICE]
    lines = [
        "| method and path | scope | who (roles) | rate limit | notes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for rule in RULES:
        if rule.signed:
            scope, who, limit = "—", "signed, no key", "—"
        else:
            scope = f"`{rule.scope}`"
            who = ", ".join(role for role in role_order if role in rule.roles)
            limit = str(rule.rate_limit)
        lines.append(f"| `{rule.method} {rule.path}` | {scope} | {who} | {limit} | {rule.note} |")
    return "\n".join(lines)
