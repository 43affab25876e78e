"""Stripe card payments behind plain data: PaymentIntents with manual capture.

``StripeGateway`` wraps ``stripe.StripeClient`` (no network retries: the caller retries
with the same idempotency key, or reconciles) and turns every provider failure into one
of the typed errors in ``payments.gateways.base``:

* 402 -> ``PaymentDeclined`` (with the intent id when the provider tells which).
* cannot connect (refused, connect timeout), 429, 5xx -> ``ProviderUnavailable``.
  Stripe documents a 500 as "result indeterminate", and replays it for the same key;
  retrying with the same key is what keeps either reading safe.
* read timeout, connection dropped after the request went out, 409 (another request
  with the same key in flight), unreadable 2xx -> ``OutcomeUnknown``.
* any other 4xx -> ``ProviderRequestRejected``.

Only parameters that both Stripe and localstripe (the fake used in dev and tests, see
``fakes/stripe_server.py``) accept are sent. ``authorize`` is one call, ``POST
/v1/payment_intents`` with ``amount``, ``currency``, ``payment_method``,
``capture_method=manual``, ``confirm=true`` and ``metadata``, so one idempotency key
covers the whole authorization. No payment method types are sent: the API version
stripe 16.1.0 pins (2026-10-28.endive) answers 400
``payment_method_types_no_longer_supported`` to ``payment_method_types``, and
localstripe refuses its successors ``allowed_payment_method_types`` and
``automatic_payment_methods`` (and ``return_url``). Against real Stripe, construct the
gateway with ``forbid_redirects=True``.

localstripe 1.15.10 quirks found while building this (Stripe behaves otherwise):

* It ignores ``Idempotency-Key``: a retried POST creates a second object. Tests put
  ``tests.support.fault_proxy.FaultProxy`` in front of it, which implements Stripe's
  replay semantics.
* No Search API: ``GET /v1/payment_intents/search`` is routed as a retrieve of the id
  "search" and answers 404. ``find_by_order`` then lists and filters (remembered per
  gateway instance). ``GET /v1/payment_intents`` accepts only ``limit`` and
  ``starting_after`` (``created``, ``customer``... -> 400 "Unexpected created") and lists
  oldest first; Stripe lists newest first.
* Unknown parameters are refused with 400 "Unexpected <name>": PaymentIntent
  ``description`` / ``statement_descriptor``, refund ``reason``, cancel
  ``cancellation_reason``. ``confirm`` with ``payment_method`` answers 500 "Not
  implemented".
* Stock localstripe PaymentIntents carry no ``amount_capturable`` / ``amount_received``
  and capture once. The fake server patches in Stripe's multicapture, with both fields
  (``fakes/stripe_server.py``); for an intent without them the adapter derives them:
  capturable = amount while ``requires_capture``, received = amount once ``succeeded``.
* ``latest_charge`` is the embedded charge object, not its id; there is also the
  deprecated ``charges`` list. ``payment_method`` keeps the alias sent
  (``pm_card_visa``), and every lookup of an alias creates a fresh ``pm_...`` object.
* A decline answers 402 with ``{"type": "invalid_request_error", "code":
  "card_declined", "charge": "ch_..."}``: no ``card_error`` type, no ``decline_code``,
  no ``payment_intent``. The adapter uses ``code`` as the decline code and reads the
  charge to find the intent. The declined intent stays, in ``requires_payment_method``,
  with ``last_payment_error`` ``{code, message, charge}``.
* Only cards 4000000000000341 (alias ``pm_card_chargeCustomerFail``), 4000008260003178
  and 4000008400001629 decline at charge time. ``pm_card_visa_chargeDeclined``
  (4000000000000002) declines only when attached to a customer: a PaymentIntent with it
  succeeds. The only aliases are ``pm_card_visa``, ``pm_card_visa_chargeDeclined`` and
  ``pm_card_chargeCustomerFail``; other test cards need ``POST /v1/payment_methods``
  with a raw card number (real Stripe refuses raw numbers by default).
* 3-D Secure cards (4000002500003155, 4000002760003184, 4000000000003220, ...) leave the
  intent in ``requires_action`` with ``next_action`` ``{"type": "use_stripe_sdk",
  "use_stripe_sdk": {"type": "three_d_secure_redirect"}}``; the browser step is faked by
  ``POST /v1/payment_intents/{id}/_authenticate`` (client_secret, success).
* A final capture below the amount settles the charge for what was captured plus a
  refund of the rest (the charge shows ``amount_refunded``); Stripe releases the rest
  and refunds nothing. Over-capture, a capture after the final one and a cancel of a
  succeeded intent answer 400 with Stripe's codes (the fake server's patch).
* Refunds are not checked against what was captured: refunding more than the amount,
  or refunding an intent still in ``requires_capture``, succeeds. Refunds are
  ``succeeded`` at once.
* Every error has type ``invalid_request_error``; most 400s say only "Bad request".
* Any bearer key starting with ``sk_`` (longer than 5 characters) is accepted.
* Webhooks: see the docstring of ``fakes/stripe_server.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests
import stripe
import urllib3
from stripe._request_options import RequestOptions
from stripe.params import (
    PaymentIntentCaptureParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PaymentIntentSearchParams,
    RefundCreateParams,
)

from core.errors import MalformedJson
from core.json_input import json_loads_bounded
from core.log_context import request_id_header
from core.net import request_never_sent
from payments.gateways.base import (
    GatewayError,
    IntentResult,
    OutcomeUnknown,
    PaymentDeclined,
    ProviderRequestRejected,
    ProviderUnavailable,
    RefundResult,
    WebhookSignatureInvalid,
)

DEFAULT_API_BASE = "https://api.stripe.com"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
WEBHOOK_TOLERANCE_SECONDS = 300
_PAGE_SIZE = 100


class _Urllib3Client(stripe.HTTPClient):
    """stripe's HTTP client interface on one urllib3 pool: keep-alive connections shared
    by the process's threads, the proxy resolved once, no redirects, no retries.

    stripe's default client goes through requests, which costs about 0.2 ms of CPU per
    call over urllib3 itself (a session's hooks, cookies, adapters and environment
    lookups); at a checkout's one call per order that is a measured share of the
    server's CPU (benchmarks/RESULTS.md, "Stripe HTTP client"). HTTPS_PROXY /
    HTTP_PROXY / ALL_PROXY / NO_PROXY for the API address are read when the gateway is
    built, never per call.
    """

    name = "urllib3"

    def __init__(
        self,
        *,
        timeout: tuple[float, float],
        proxy: tuple[str | None, dict[str, str]],
        maxsize: int,
    ) -> None:
        super().__init__()
        pool_options: dict[str, Any] = {
            "timeout": urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            "retries": False,
            "maxsize": maxsize,
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": stripe.ca_bundle_path,
        }
        proxy_url, proxy_headers = proxy
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy_url, proxy_headers=proxy_headers, **pool_options)
            if proxy_url
            else urllib3.PoolManager(**pool_options)
        )

    def request(  # type: ignore[override]  # bytes, as stripe's own clients return
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        response = self._send(method, url, headers, post_data, preload=True)
        return response.data, response.status, response.headers

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        response = self._send(method, url, headers, post_data, preload=False)
        return response, response.status, response.headers

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any,
        *,
        preload: bool,
    ) -> urllib3.BaseHTTPResponse:
        try:
            return self._pool.request(
                method.upper(),
                url,
                body=post_data,
                headers=dict(headers or {}),
                redirect=False,
                preload_content=preload,
            )
        except urllib3.exceptions.HTTPError as exc:
            # stripe's own wording and type, so the gateway translates it as before
            # (core.net.request_never_sent reads the urllib3 error this carries).
            raise stripe.APIConnectionError(
                f"Unexpected error communicating with Stripe. (Network error: "
                f"{type(exc).__name__}: {exc})",
                should_retry=False,
            ) from exc

    def close(self) -> None:
        self._pool.clear()


def _proxy_for(api_base: str) -> tuple[str | None, dict[str, str]]:
    """The proxy the environment names for ``api_base`` (none if NO_PROXY covers it),
    and the ``Proxy-Authorization`` header its user and password make, as requests'
    adapter builds them (urllib3 does not read credentials from a proxy URL)."""
    proxies = requests.utils.get_environ_proxies(api_base)
    scheme = api_base.split("://", 1)[0].lower()
    url = proxies.get(scheme) or proxies.get("all")
    if not url:
        return None, {}
    url = requests.utils.prepend_scheme_if_needed(url, "http")
    user, password = requests.utils.get_auth_from_url(url)
    if not user:
        return url, {}
    return url, urllib3.util.make_headers(proxy_basic_auth=f"{user}:{password}")


class StripeGateway:
    """Authorize, capture, cancel and refund card payments through Stripe PaymentIntents."""

    def __init__(
        self,
        *,
        api_key: str,
        api_base: str = DEFAULT_API_BASE,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        max_list_pages: int = 50,
        forbid_redirects: bool = False,
        max_connections: int = 10,
    ) -> None:
        """Talk to the Stripe API at ``api_base``; no retries, bounded timeouts (seconds),
        up to ``max_connections`` idle keep-alive connections kept for the threads.

        ``forbid_redirects`` sends ``automatic_payment_methods[allow_redirects]=never``
        with ``authorize``, so that real Stripe confirms server-side without asking for
        a ``return_url``. Leave it off for localstripe, which refuses the parameter.
        """
        if not api_key:
            raise ValueError("a Stripe API key is required")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self._http = _Urllib3Client(
            timeout=(connect_timeout, read_timeout),
            proxy=_proxy_for(api_base),
            maxsize=max_connections,
        )
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=0,
        )
        self._max_list_pages = max_list_pages
        self._forbid_redirects = forbid_redirects
        # None until the first find_by_order tells whether the Search API exists.
        self._search_supported: bool | None = None

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._http.close()

    def authorize(
        self,
        *,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> IntentResult:
        """Create and confirm a manual-capture PaymentIntent for ``amount``.

        Return the intent in ``requires_capture`` (authorized), ``requires_action`` (the
        customer must authenticate; ``client_secret`` is set) or whatever status the
        provider reports. Raise ``PaymentDeclined`` when the card is refused.
        """
        _check_amount(amount)
        _check_key(idempotency_key)
        params: PaymentIntentCreateParams = {
            "amount": amount,
            "currency": currency.lower(),
            "payment_method": payment_method,
            "capture_method": "manual",
            "confirm": True,
            "metadata": {str(k): str(v) for k, v in metadata.items()},
            # Capture per shipment (flows.ship): several captures of one authorization.
            "payment_method_options": {"card": {"request_multicapture": "if_available"}},
        }
        if self._forbid_redirects:
            params["automatic_payment_methods"] = {"enabled": True, "allow_redirects": "never"}
        with self._translated():
            intent = self._client.v1.payment_intents.create(
                params=params, options=_options(idempotency_key)
            )
        return _intent_result(intent.to_dict())

    def retrieve(self, *, intent_id: str) -> IntentResult:
        with self._translated(intent_id=intent_id):
            intent = self._client.v1.payment_intents.retrieve(intent_id)
        return _intent_result(intent.to_dict())

    def find_by_order(self, *, order_id: str | int) -> list[IntentResult]:
        """Return every PaymentIntent whose metadata ``order_id`` matches, newest first.

        Use the Search API where it exists, else list and filter. Stripe's search index
        lags writes by up to a minute: right after an ``OutcomeUnknown``, retry with the
        same idempotency key rather than conclude anything from an empty result.
        """
        wanted = str(order_id)
        if self._search_supported is not False:
            try:
                found = list(self._search_by_order(wanted))
            except ProviderRequestRejected as exc:
                if exc.status != 404 or self._search_supported:
                    raise
                self._search_supported = False
            else:
                self._search_supported = True
                return _newest_first(found)
        return _newest_first(
            [
                intent
                for intent in self._list_all_intents()
                if str((intent.get("metadata") or {}).get("order_id")) == wanted
            ]
        )

    def capture(
        self,
        *,
        intent_id: str,
        amount: int | None = None,
        idempotency_key: str,
        final: bool = True,
    ) -> IntentResult:
        """Capture ``amount`` (all that is capturable when None) of an authorized intent.

        ``final=False`` (multicapture) keeps the rest of the authorization for later
        captures: the intent stays ``requires_capture``. A final capture releases the rest.
        """
        _check_key(idempotency_key)
        params: PaymentIntentCaptureParams = {}
        if amount is not None:
            _check_amount(amount)
            params["amount_to_capture"] = amount
        if not final:
            params["final_capture"] = False
        with self._translated(intent_id=intent_id):
            intent = self._client.v1.payment_intents.capture(
                intent_id, params=params, options=_options(idempotency_key)
            )
        return _intent_result(intent.to_dict())

    def cancel(self, *, intent_id: str, idempotency_key: str) -> IntentResult:
        """Void an intent that is not captured yet (refund a captured one instead)."""
        _check_key(idempotency_key)
        with self._translated(intent_id=intent_id):
            intent = self._client.v1.payment_intents.cancel(
                intent_id, options=_options(idempotency_key)
            )
        return _intent_result(intent.to_dict())

    def refund(
        self, *, intent_id: str, amount: int | None = None, idempotency_key: str
    ) -> RefundResult:
        """Refund ``amount`` (everything not yet refunded when None) of a captured intent."""
        _check_key(idempotency_key)
        params: RefundCreateParams = {"payment_intent": intent_id}
        if amount is not None:
            _check_amount(amount)
            params["amount"] = amount
        with self._translated(intent_id=intent_id):
            refund = self._client.v1.refunds.create(
                params=params, options=_options(idempotency_key)
            )
        data = refund.to_dict()
        return RefundResult(
            id=str(data["id"]),
            amount=int(data["amount"]),
            status=str(data["status"]),
            currency=str(data.get("currency") or ""),
            intent_id=_id_of(data.get("payment_intent")) or intent_id,
        )

    def _search_by_order(self, order_id: str) -> Iterator[dict[str, Any]]:
        escaped = order_id.replace("\\", "\\\\").replace("'", "\\'")
        params: PaymentIntentSearchParams = {
            "query": f"metadata['order_id']:'{escaped}'",
            "limit": _PAGE_SIZE,
        }
        for _ in range(self._max_list_pages):
            with self._translated():
                result = self._client.v1.payment_intents.search(params=params)
            for intent in result.data:
                yield intent.to_dict()
            if not result.has_more or not result.next_page:
                return
            params["page"] = result.next_page
        raise OutcomeUnknown(f"order lookup gave up after {self._max_list_pages} pages")

    def _list_all_intents(self) -> Iterator[dict[str, Any]]:
        params: PaymentIntentListParams = {"limit": _PAGE_SIZE}
        for _ in range(self._max_list_pages):
            with self._translated():
                result = self._client.v1.payment_intents.list(params=params)
            for intent in result.data:
                yield intent.to_dict()
            if not result.has_more or not result.data:
                return
            params["starting_after"] = result.data[-1].id
        raise OutcomeUnknown(f"order lookup gave up after {self._max_list_pages} pages")

    @contextmanager
    def _translated(self, *, intent_id: str | None = None) -> Iterator[None]:
        """Turn the stripe library's errors into the gateway's typed errors."""
        try:
            yield
        except stripe.StripeError as exc:
            raise self._translate(exc, intent_id=intent_id) from exc

    def _translate(self, exc: stripe.StripeError, *, intent_id: str | None) -> GatewayError:
        message = exc.user_message or type(exc).__name__
        if isinstance(exc, stripe.APIConnectionError):
            if request_never_sent(exc):
                return ProviderUnavailable(f"could not connect to Stripe: {message}")
            return OutcomeUnknown(f"no answer from Stripe after sending: {message}")
        status = exc.http_status
        error = _error_body(exc)
        if status == 402 or isinstance(exc, stripe.CardError):
            return PaymentDeclined(
                decline_code=str(error.get("decline_code") or error.get("code") or "declined"),
                message=message,
                intent_id=intent_id or self._declined_intent_id(error),
            )
        if status is None or 200 <= status < 300 or status == 409:
            return OutcomeUnknown(message, status=status)
        if status == 429 or status >= 500:
            return ProviderUnavailable(message, status=status)
        provider_code = exc.code or error.get("code")
        if provider_code is None and error.get("type") == "idempotency_error":
            provider_code = "idempotency_error"
        return ProviderRequestRejected(message, status=status, provider_code=provider_code)

    def _declined_intent_id(self, error: Mapping[str, Any]) -> str | None:
        """Find which intent a decline belongs to: best effort, one extra read at most."""
        intent_id = _id_of(error.get("payment_intent"))
        if intent_id:
            return intent_id
        charge_id = error.get("charge")
        if not isinstance(charge_id, str):
            return None
        try:
            charge = self._client.v1.charges.retrieve(charge_id)
        except stripe.StripeError:
            return None
        return _id_of(charge.to_dict().get("payment_intent"))


def verify_webhook(
    payload: bytes | str,
    signature_header: str | None,
    secret: str,
    *,
    tolerance: int = WEBHOOK_TOLERANCE_SECONDS,
    max_depth: int = 32,
) -> dict[str, Any]:
    """Check a webhook's ``Stripe-Signature`` and return the event as plain data.

    Raise ``WebhookSignatureInvalid`` with reason ``unsigned`` (no header or no v1
    signature), ``malformed`` (unreadable header or body), ``forged`` (no signature
    matches ``secret``) or ``stale`` (signed more than ``tolerance`` seconds ago);
    ``core.errors.JsonTooDeep`` for a genuine event nested deeper than ``max_depth``.
    Strings are returned as sent: customer-typed text may hold NUL or lone surrogates.
    """
    if not secret:
        raise ValueError("a webhook signing secret is required")
    if not signature_header:
        raise WebhookSignatureInvalid("unsigned", "no Stripe-Signature header")
    timestamp, has_v1 = _parse_signature_header(signature_header)
    if not has_v1:
        raise WebhookSignatureInvalid("unsigned", "no v1 signature in Stripe-Signature")
    try:
        stripe.WebhookSignature.verify_header(payload, signature_header, secret, tolerance=None)
    except stripe.SignatureVerificationError as exc:
        raise WebhookSignatureInvalid("forged", "no signature matches the payload") from exc
    if tolerance and timestamp < time.time() - tolerance:
        raise WebhookSignatureInvalid("stale", f"signed at {timestamp}, older than {tolerance}s")
    try:
        event = json_loads_bounded(payload, max_depth=max_depth, allow_lone_surrogates=True)
    except MalformedJson as exc:
        raise WebhookSignatureInvalid("malformed", "the payload is not JSON") from exc
    if not isinstance(event, dict):
        raise WebhookSignatureInvalid("malformed", "the payload is not a JSON object")
    return event


def _parse_signature_header(header: str) -> tuple[int, bool]:
    timestamp: int | None = None
    has_v1 = False
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                timestamp = None
        elif name == "v1" and value:
            has_v1 = True
    if timestamp is None:
        raise WebhookSignatureInvalid("malformed", "no timestamp in Stripe-Signature")
    return timestamp, has_v1


def _check_amount(amount: int) -> None:
    if amount <= 0:
        raise ValueError("amount must be a positive number of minor units")


def _check_key(idempotency_key: str) -> None:
    if not idempotency_key or len(idempotency_key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ValueError(f"an idempotency key of 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters")


def _error_body(exc: stripe.StripeError) -> dict[str, Any]:
    body = exc.json_body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error
    return {}


def _id_of(value: Any) -> str | None:
    """An expandable field's id, whether the provider sent the id or the object."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _intent_result(data: Mapping[str, Any]) -> IntentResult:
    status = str(data["status"])
    amount = int(data["amount"])
    amount_capturable = data.get("amount_capturable")
    if amount_capturable is None:
        amount_capturable = amount if status == "requires_capture" else 0
    amount_received = data.get("amount_received")
    if amount_received is None:
        amount_received = amount if status == "succeeded" else 0
    error = data.get("last_payment_error") or {}
    decline_code = (error.get("decline_code") or error.get("code")) if error else None
    return IntentResult(
        id=str(data["id"]),
        status=status,
        amount=amount,
        amount_capturable=int(amount_capturable),
        amount_received=int(amount_received),
        currency=str(data["currency"]),
        client_secret=data.get("client_secret"),
        decline_code=decline_code,
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    )


def _newest_first(intents: list[dict[str, Any]]) -> list[IntentResult]:
    ordered = sorted(intents, key=lambda intent: int(intent.get("created") or 0), reverse=True)
    return [_intent_result(intent) for intent in ordered]


def intent_from_object(data: Mapping[str, Any]) -> IntentResult:
    """Read a PaymentIntent delivered as plain data (e.g. a webhook's data.object)."""
    return _intent_result(data)


def _options(idempotency_key: str) -> RequestOptions:
    """Per-call options: the idempotency key, and the request id that caused the call."""
    options: RequestOptions = {"idempotency_key": idempotency_key}
    headers = request_id_header()
    if headers:
        options["headers"] = headers
    return options
