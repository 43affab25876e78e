"""A payment provider that answers at once: the Stripe endpoint a checkout's authorization uses.

    python -m benchmarks.stripe_responder --port 18401 [--host 127.0.0.1]

Issue 11 measures checkout with "payment authorized by a fake provider that answers at
once". The project's fake (localstripe, fakes/stripe_server.py) costs 1.3-1.8 ms of CPU
per authorization at first and 10-12 ms once it holds 1,000 intents (python -m
benchmarks.fake_cost; benchmarks/RESULTS.md, "Issue 11, checkout with payment"): on 2
shared cores that would take CPU from the server being measured. This responder costs
0.2-0.4 ms and is what `--payment` runs by default (`--payment-fake localstripe` runs the
project's fake instead).

It serves only `POST /v1/payment_intents` (create and confirm, as
payments.gateways.stripe.StripeGateway.authorize sends it) and `GET
/v1/payment_intents/{id}`, on a keep-alive HTTP/1.1 connection per client, from one
asyncio loop:

* Checks what the gateway sends: a bearer key starting with `sk_`, a positive integer
  `amount`, a `currency`, a `payment_method`, `capture_method=manual`, `confirm=true`;
  else 400 with Stripe's error shape (`invalid_request_error`), 401 without a key.
* Answers 200 with a PaymentIntent in `requires_capture`: `amount_capturable` the
  amount, `amount_received` 0, the metadata sent, `latest_charge` a charge id.
* Honors `Idempotency-Key` as Stripe does: the same key with the same parameters gets
  the same intent back (byte for byte, with `Idempotent-Replayed: true`); the same key
  with other parameters is refused (400 `idempotency_error`).
* Declines nothing, never asks for 3-D Secure, sends no webhooks, keeps everything in
  memory (about half a KiB per intent).

It prints one line on stdout once it accepts connections (`READY_PREFIX` + the URL) and
exits on SIGTERM or SIGINT. Standard library only.
"""

import argparse
import asyncio
import hashlib
import json
import secrets
import signal
import time
from collections.abc import Sequence
from urllib.parse import parse_qsl

READY_PREFIX = "stripe-responder ready "
_INTENTS = "/v1/payment_intents"


class Responder:
    """The intents created, by id, and the answers given, by idempotency key."""

    def __init__(self) -> None:
        self.intents: dict[str, bytes] = {}
        # key -> (hash of the parameters, status, body)
        self.replays: dict[str, tuple[bytes, int, bytes]] = {}

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, bool]:
        """Return (status, JSON body, replayed)."""
        if not headers.get("authorization", "").startswith("Bearer sk_"):
            return 401, _error("invalid_request_error", None, "Invalid API Key provided."), False
        path = path.split("?", 1)[0]
        if method == "POST" and path == _INTENTS:
            key = headers.get("idempotency-key", "")
            digest = hashlib.sha256(body).digest()
            if key and key in self.replays:
                stored_digest, status, answer = self.replays[key]
                if stored_digest != digest:
                    return (
                        400,
                        _error(
                            "idempotency_error",
                            None,
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with.",
                        ),
                        False,
                    )
                return status, answer, True
            status, answer = self.create(body)
            if key:
                self.replays[key] = (digest, status, answer)
            return status, answer, False
        if method == "GET" and path.startswith(_INTENTS + "/"):
            intent = self.intents.get(path[len(_INTENTS) + 1 :])
            if intent is None:
                return (
                    404,
                    _error("invalid_request_error", "resource_missing", "No such intent"),
                    False,
                )
            return 200, intent, False
        return (
            404,
            _error("invalid_request_error", None, f"Unrecognized request URL ({method} {path})"),
            False,
        )

    def create(self, body: bytes) -> tuple[int, bytes]:
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        amount_text = params.get("amount", "")
        if not amount_text.isdigit() or int(amount_text) <= 0:
            return 400, _error("invalid_request_error", "parameter_invalid_integer", "amount")
        for name, wanted in (("capture_method", "manual"), ("confirm", "true")):
            if params.get(name) != wanted:
                return 400, _error("invalid_request_error", "parameter_invalid", name)
        for name in ("currency", "payment_method"):
            if not params.get(name):
                return 400, _error("invalid_request_error", "parameter_missing", name)
        amount = int(amount_text)
        intent_id = "pi_" + secrets.token_hex(12)
        metadata = {
            name[len("metadata[") : -1]: value
            for name, value in params.items()
            if name.startswith("metadata[") and name.endswith("]")
        }
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": amount,
            "amount_received": 0,
            "capture_method": "manual",
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": params["currency"],
            "latest_charge": "ch_" + secrets.token_hex(12),
            "last_payment_error": None,
            "livemode": False,
            "metadata": metadata,
            "next_action": None,
            "payment_method": params["payment_method"],
            "status": "requires_capture",
        }
        answer = json.dumps(intent).encode()
        self.intents[intent_id] = answer
        return 200, answer


def _error(kind: str, code: str | None, message: str) -> bytes:
    error: dict[str, str] = {"type": kind, "message": message}
    if code:
        error["code"] = code
    return json.dumps({"error": error}).encode()


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


async def _serve_connection(
    responder: Responder, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            method, path, _version = request_line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            body = await reader.readexactly(length) if length else b""
            status, answer, replayed = responder.handle(method, path, headers, body)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(answer)}\r\n"
                f"Request-Id: req_{secrets.token_hex(7)}\r\n"
                + ("Idempotent-Replayed: true\r\n" if replayed else "")
                + "\r\n"
            )
            writer.write(head.encode("latin-1") + answer)
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, ValueError):
        # CancelledError: the server stops with keep-alive connections still open.
        return
    finally:
        writer.close()


async def serve(host: str, port: int) -> None:
    responder = Responder()
    server = await asyncio.start_server(
        lambda reader, writer: _serve_connection(responder, reader, writer), host, port
    )
    bound = server.sockets[0].getsockname()
    print(f"{READY_PREFIX}http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stripe_responder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
