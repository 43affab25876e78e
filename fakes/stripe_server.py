"""Run localstripe as an in-memory fake Stripe API on loopback (dev and tests only).

    python -m fakes.stripe_server --port 8420 [--host 127.0.0.1] [--state-file PATH] [--verbose]

localstripe (GPL) runs here as a separate process; app code never imports it, and this
module imports it only inside ``serve()``. The process binds the given loopback address
only (``--port 0`` picks a free port), keeps all state in memory, prints one ready line
on stdout once it accepts connections::

    fake-stripe ready http://127.0.0.1:8420

and exits with status 0 on SIGTERM or SIGINT. Point a ``stripe.StripeClient`` at that URL
(``base_addresses={"api": url}``) with any API key that starts with ``sk_``.

State: localstripe's stock store pickles itself to /tmp/localstripe.pickle after every
write and reloads it at start-up, which would leak state between runs and between
concurrent servers. ``serve()`` replaces ``Store.try_load_from_disk`` and
``Store.dump_to_disk``: without ``--state-file`` they do nothing, so every process
starts empty and writes nothing; with ``--state-file PATH`` (``scripts/run`` keeps
``var/fake-stripe.pickle``) the store is loaded from PATH at start and written there
after every change (to a temporary file, then renamed), so a restarted server still
knows the payment intents of orders placed before. ``DELETE /_config/data`` empties
the store of a running server (``flush_data()``).

Webhooks (localstripe/webhooks.py, server.py):

* Register an endpoint with ``POST /_config/webhooks/{endpoint_id}`` carrying ``url``,
  ``secret`` and optionally ``events`` (a list of event types; absent means all), as JSON
  or form data; ``/_config/*`` needs no API key. Posting the same id again replaces the
  endpoint. ``register_webhook_endpoint()`` below does this. Registrations live in a
  module-level dict, not in the store: ``DELETE /_config/data`` does not remove them and
  there is no way to unregister one short of restarting the server.
* When a resource change emits an event, localstripe stores an ``Event`` (listable with
  ``GET /v1/events``), then schedules delivery on the event loop: it sleeps a fixed 1 s,
  then POSTs the JSON event to every registered endpoint whose filter matches.
* Each delivery is signed like Stripe's: ``Stripe-Signature: t=<event.created>,v1=<hex
  HMAC-SHA256(secret, "<event.created>.<body>")>``, so ``stripe.WebhookSignature`` (and
  ``payments.gateways.stripe.verify_webhook``) verify it. Only one ``v1`` signature, no
  ``v0``.
* One attempt per endpoint: no retries, no back-off; a non-2xx answer or a connection
  error is only logged (logger ``aiohttp.access``, shown with ``--verbose``). The client
  uses aiohttp's default timeout (5 minutes), so a hanging receiver holds a task open.
* Events carry ``api_version: "2017-08-15"`` whatever Stripe-Version the client sent, and
  ``data.object`` is the object as localstripe exports it at the moment of the event.
* PaymentIntent events are only ``payment_intent.succeeded`` (on capture for
  ``capture_method=manual``) and ``payment_intent.payment_failed`` (on a decline). There
  is no ``payment_intent.amount_capturable_updated``, ``payment_intent.canceled``,
  ``payment_intent.requires_action``, ``charge.*`` or ``refund.*`` event.

Multicapture (``_patch_payment_intents()``, applied by ``serve()``; localstripe itself
captures a PaymentIntent once, in full or in part with the rest refunded):

* ``POST /v1/payment_intents`` accepts ``payment_method_options[card][request_multicapture]``
  (``if_available`` or ``never``); with ``if_available`` a Visa, Mastercard, Amex or
  Discover card offers multicapture, as on Stripe; a card of another network (a
  PaymentMethod made from JCB 3566002020360505, Diners 3056930009020004 or UnionPay
  6200000000000005) does not.
* ``POST /v1/payment_intents/{id}/capture`` takes ``amount_to_capture`` (default: all
  that is still capturable) and ``final_capture`` (default true), as Stripe does. A
  capture with ``final_capture=false`` keeps the intent in ``requires_capture`` and
  lowers ``amount_capturable``; the final one (or ``final_capture=true``) makes it
  ``succeeded`` and releases the rest. ``amount_received`` adds up every capture and
  ``amount_capturable`` is what is left while ``requires_capture`` (both now in every
  PaymentIntent the fake returns). At most 50 captures per intent.
* Errors, as Stripe answers them (400, ``invalid_request_error``): more than is capturable
  -> ``amount_too_large``; a capture of an intent not in ``requires_capture`` (after the
  final capture, after a cancel) -> ``payment_intent_unexpected_state``;
  ``final_capture=false`` on an intent created without ``request_multicapture=if_available``
  -> ``payment_intent_invalid_parameter``; a negative or non-integer amount ->
  ``parameter_invalid_integer``.
* ``POST /v1/payment_intents/{id}/cancel`` on an intent captured in part releases the
  rest and leaves it ``succeeded`` (Stripe's multicapture does the same); on a
  ``succeeded`` intent -> ``payment_intent_unexpected_state``.
* The charge is settled when the intent succeeds: ``amount`` stays what was authorized
  and the released rest shows as ``amount_refunded`` (localstripe's partial capture).
* ``payment_intent.succeeded`` is sent on the final capture (or the cancel that ends a
  partly captured intent) only: a non-final capture sends no event (Stripe sends
  ``payment_intent.amount_capturable_updated``).
* Idempotency keys are still ignored (``tests.support.fault_proxy.FaultProxy`` replays).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import pickle
import signal
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

READY_PREFIX = "fake-stripe ready "


def _loopback_host(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ipaddress.AddressValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IPv4 address") from exc
    if not address.is_loopback:
        raise argparse.ArgumentTypeError(f"{value} is not a loopback address; use 127.0.0.1")
    return value


def _set_disk_persistence(state_file: Path | None) -> None:
    """Keep localstripe's store in memory, or in ``state_file`` when one is given."""
    from localstripe import resources  # GPL, dev/test only: imported in the fake process

    if state_file is None:

        def _no_op(self: Any) -> None:
            return None

        resources.Store.try_load_from_disk = _no_op
        resources.Store.dump_to_disk = _no_op
        return

    path = state_file
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)

    def _load(self: Any) -> None:
        try:
            with path.open("rb") as stored:
                # The file is this server's own, written by _dump below.
                old = pickle.load(stored)  # noqa: S301
        except FileNotFoundError:
            return
        self.clear()
        self.update(old)

    def _dump(self: Any) -> None:
        with partial.open("wb") as stored:
            pickle.dump(dict(self), stored, protocol=pickle.HIGHEST_PROTOCOL)
        # A server stopped mid-write leaves the previous state whole.
        os.replace(partial, path)

    resources.Store.try_load_from_disk = _load
    resources.Store.dump_to_disk = _dump


MULTICAPTURE_LIMIT = 50  # Stripe allows at most 50 captures of one PaymentIntent
# Card number prefixes of the networks without multicapture (JCB, Diners, UnionPay).
NO_MULTICAPTURE_PREFIXES = ("35", "30", "36", "38", "62")


def _multicapture_network(intent: Any) -> bool:
    """Whether the intent's card is of a network Stripe offers multicapture on."""
    from localstripe import resources

    method_id = getattr(intent, "payment_method", None)
    if not method_id:
        return True
    try:
        method = resources.PaymentMethod._api_retrieve(method_id)
    except Exception:  # unknown id: localstripe answers that elsewhere
        return True
    number = str(getattr(method, "_card_number", "") or "")
    return not number.startswith(NO_MULTICAPTURE_PREFIXES)


def _patch_payment_intents() -> None:
    """Teach localstripe's PaymentIntent Stripe's multicapture (see the module docstring).

    Call before ``localstripe.server`` is imported: its routes are built from
    ``resources.extra_apis``, whose capture and cancel entries are replaced here.
    """
    from localstripe import resources
    from localstripe.errors import UserError

    intent_class: Any = resources.PaymentIntent
    stock_init = intent_class.__init__
    stock_cancel = intent_class._api_cancel

    def _init(self: Any, *args: Any, payment_method_options: Any = None, **kwargs: Any) -> None:
        stock_init(self, *args, payment_method_options=payment_method_options, **kwargs)
        card = (payment_method_options or {}).get("card") or {}
        requested = card.get("request_multicapture") if isinstance(card, dict) else None
        if requested not in (None, "if_available", "never"):
            raise UserError(
                400,
                "Invalid payment_method_options[card][request_multicapture]: must be one of "
                "if_available, never",
                {"code": "parameter_invalid_string", "param": "request_multicapture"},
            )
        # Stripe offers it for Visa, Mastercard, Amex and Discover cards only: a card of
        # another network (JCB 35..., Diners 30/36/38..., UnionPay 62...) gets none.
        self._multicapture = requested == "if_available" and _multicapture_network(self)
        self._captures = []

    def _received(self: Any) -> int:
        captures = getattr(self, "_captures", None)
        if captures:
            return int(sum(captures))
        # Captured in full before multicapture was patched in (an older state file), or
        # an automatic capture: all of it. Refunds never lower what was received.
        charge = self.latest_charge
        if charge is not None and charge.status == "succeeded" and charge.captured:
            return int(charge.amount)
        return 0

    def _capturable(self: Any) -> int:
        if self.status != "requires_capture":
            return 0
        return int(self.amount - _received(self))

    def _unexpected_state(intent: Any, action: str) -> UserError:
        return UserError(
            400,
            f"This PaymentIntent could not be {action} because it has a status of "
            f"{intent.status}. Only a PaymentIntent with one of the following statuses may "
            f"be {action}: requires_capture.",
            {"code": "payment_intent_unexpected_state", "payment_intent": {"id": intent.id}},
        )

    def _finish(intent: Any) -> None:
        """Settle the charge for what was captured; the rest of the hold is released
        (the charge shows it refunded, localstripe's way of a partial capture)."""
        intent.latest_charge._capture(amount=_received(intent), on_success=intent._on_success)

    def _api_capture(
        cls: Any, id: Any, amount_to_capture: Any = None, final_capture: Any = None, **kwargs: Any
    ) -> Any:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        if not (isinstance(id, str) and id.startswith("pi_")):
            raise UserError(400, "Bad request")
        intent = cls._api_retrieve(id)
        final = True if final_capture is None else resources.try_convert_to_bool(final_capture)
        if not isinstance(final, bool):
            raise UserError(
                400,
                "Invalid boolean: final_capture",
                {"code": "parameter_invalid_boolean", "param": "final_capture"},
            )
        if intent.status != "requires_capture":
            raise _unexpected_state(intent, "captured")
        capturable = _capturable(intent)
        amount = capturable if amount_to_capture is None else amount_to_capture
        amount = resources.try_convert_to_int(amount)
        if not isinstance(amount, int) or amount < 0:
            raise UserError(
                400,
                "Invalid integer: amount_to_capture",
                {"code": "parameter_invalid_integer", "param": "amount_to_capture"},
            )
        if amount > capturable:
            raise UserError(
                400,
                f"The amount to capture ({amount}) is greater than the amount capturable "
                f"({capturable}).",
                {"code": "amount_too_large", "param": "amount_to_capture"},
            )
        if not final and not getattr(intent, "_multicapture", False):
            raise UserError(
                400,
                "final_capture=false needs multicapture, which was not requested for this "
                "PaymentIntent (payment_method_options[card][request_multicapture]).",
                {"code": "payment_intent_invalid_parameter", "param": "final_capture"},
            )
        captures = getattr(intent, "_captures", None)
        if captures is None:
            captures = intent._captures = []
        if len(captures) >= MULTICAPTURE_LIMIT:
            raise UserError(
                400,
                f"A PaymentIntent can be captured at most {MULTICAPTURE_LIMIT} times.",
                {"code": "payment_intent_unexpected_state"},
            )
        captures.append(amount)
        if final:
            _finish(intent)
        return intent

    def _api_cancel(cls: Any, id: Any, **kwargs: Any) -> Any:
        if isinstance(id, str) and id.startswith("pi_"):
            intent = cls._api_retrieve(id)
            if intent.status == "requires_capture" and getattr(intent, "_captures", None):
                # Partly captured: cancelling releases the rest, and the intent succeeds.
                if kwargs:
                    raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
                _finish(intent)
                return intent
            if intent.status == "succeeded":
                raise _unexpected_state(intent, "canceled")
        return stock_cancel(id, **kwargs)

    intent_class.__init__ = _init
    intent_class.amount_received = property(_received)
    intent_class.amount_capturable = property(_capturable)
    intent_class._api_capture = classmethod(_api_capture)
    intent_class._api_cancel = classmethod(_api_cancel)
    routes = {
        "/v1/payment_intents/{id}/capture": intent_class._api_capture,
        "/v1/payment_intents/{id}/cancel": intent_class._api_cancel,
    }
    resources.extra_apis[:] = [
        (method, url, routes.get(url, func)) for method, url, func in resources.extra_apis
    ]


async def serve(host: str, port: int, state_file: Path | None = None) -> None:
    """Serve localstripe's aiohttp app on host:port until SIGTERM or SIGINT."""
    _set_disk_persistence(state_file)
    _patch_payment_intents()
    from aiohttp import web
    from localstripe.resources import store
    from localstripe.server import app

    if state_file is not None:
        store.try_load_from_disk()

        async def _dump_after_write(request: web.Request, response: web.StreamResponse) -> None:
            # Captures, cancels and refunds change stored objects in place, which the
            # store's own write hook does not see: write the whole store once more.
            if request.method != "GET":
                store.dump_to_disk()

        app.on_response_prepare.append(_dump_after_write)

    runner = web.AppRunner(app, access_log=logging.getLogger("aiohttp.access"))
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    print(f"{READY_PREFIX}http://{bound_host}:{bound_port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _post(url: str, *, method: str, payload: dict[str, Any] | None, timeout: float) -> None:
    if not url.startswith("http://"):
        raise ValueError(f"the fake Stripe server speaks plain http, got {url!r}")
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        response.read()


def register_webhook_endpoint(
    api_base: str,
    *,
    url: str,
    secret: str,
    events: Sequence[str] | None = None,
    endpoint_id: str = "oms",
    timeout: float = 5.0,
) -> None:
    """Make the fake server deliver events to ``url``, signed with ``secret``."""
    payload: dict[str, Any] = {"url": url, "secret": secret}
    if events is not None:
        payload["events"] = list(events)
    _post(
        f"{api_base.rstrip('/')}/_config/webhooks/{endpoint_id}",
        method="POST",
        payload=payload,
        timeout=timeout,
    )


def flush_data(api_base: str, *, timeout: float = 5.0) -> None:
    """Delete every object the fake server holds (webhook registrations stay)."""
    _post(f"{api_base.rstrip('/')}/_config/data", method="DELETE", payload=None, timeout=timeout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakes.stripe_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback IPv4 address")
    parser.add_argument(
        "--container",
        action="store_true",
        help="allow a non-loopback --host (only inside a private container network)",
    )
    parser.add_argument("--verbose", action="store_true", help="log requests and webhooks")
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="keep the objects in this file across restarts (default: memory only)",
    )
    args = parser.parse_args(argv)
    if not args.container:
        try:
            _loopback_host(args.host)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(message)s",
    )
    asyncio.run(serve(args.host, args.port, args.state_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
