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


async def serve(host: str, port: int, state_file: Path | None = None) -> None:
    """Serve localstripe's aiohttp app on host:port until SIGTERM or SIGINT."""
    _set_disk_persistence(state_file)
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
