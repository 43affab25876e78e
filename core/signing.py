"""Sign and verify the HTTP bodies oms and a warehouse exchange.

Both directions use the same scheme, shared secret per warehouse: oms signs fulfilment
requests, the warehouse signs its ``shipped`` / ``delivered`` callbacks. The header::

    X-OMS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, b"<t>." + body)>

The timestamp is inside the MAC, so a captured request cannot be replayed once it is
older than the receiver's tolerance. A header may carry several ``v1`` entries (one per
secret while a secret is being rotated); any one that matches is enough. Comparison is
constant-time. No Django here: the fake warehouse uses this module too.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Literal

SIGNATURE_HEADER = "X-OMS-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
_MAX_HEADER_LENGTH = 4096

SignatureRejection = Literal["unsigned", "malformed", "forged", "stale"]


class SignatureInvalid(Exception):
    """A signed body failed verification; ``reason`` says how, for logs and metrics.

    ``unsigned``: no header, or no ``v1`` entry. ``malformed``: unreadable header.
    ``forged``: no ``v1`` entry matches the body and secret. ``stale``: genuine, but
    signed further from now than the tolerance allows (either direction).
    """

    code = "signature_invalid"

    def __init__(self, reason: SignatureRejection, message: str) -> None:
        self.reason: SignatureRejection = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """Return the ``X-OMS-Signature`` value for ``body`` signed at ``timestamp``."""
    _check_secret(secret)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError("timestamp must be a non-negative int of unix seconds")
    return f"t={timestamp},{SCHEME}={_mac(body, secret, timestamp)}"


def sign_with_each(body: bytes, secrets: list[str], timestamp: int) -> str:
    """Return one ``X-OMS-Signature`` value with a ``v1`` entry per secret (while a
    secret is rotated, a receiver holding either one verifies it)."""
    if not secrets:
        raise ValueError("at least one signing secret is required")
    entries = [sign(body, secret, timestamp).split(",", 1)[1] for secret in secrets]
    return ",".join([f"t={timestamp}", *entries])


def verify(
    body: bytes,
    header: str | None,
    secret: str,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check that ``header`` signs ``body`` with ``secret``; return the signed timestamp.

    Raise ``SignatureInvalid`` when it does not. ``now`` (unix seconds) defaults to the
    clock; a tolerance of 0 or less disables the freshness check (tests only).
    """
    _check_secret(secret)
    if not header or not header.strip():
        raise SignatureInvalid("unsigned", f"no {SIGNATURE_HEADER} header")
    timestamp, candidates = _parse(header)
    if not candidates:
        raise SignatureInvalid("unsigned", f"no {SCHEME} signature in {SIGNATURE_HEADER}")
    expected = _mac(body, secret, timestamp).encode("ascii")
    # Check every candidate, so timing does not tell which position matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureInvalid("forged", "no signature matches the body")
    if tolerance_seconds > 0:
        current = time.time() if now is None else now
        if abs(current - timestamp) > tolerance_seconds:
            raise SignatureInvalid(
                "stale", f"signed at {timestamp}, more than {tolerance_seconds}s from {current:.0f}"
            )
    return timestamp


def _mac(body: bytes, secret: str, timestamp: int) -> str:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError("sign the exact bytes sent, not a decoded string")
    message = f"{timestamp}.".encode("ascii") + bytes(body)
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def _parse(header: str) -> tuple[int, list[bytes]]:
    """Split ``t=...,v1=...[,v1=...]``; unknown schemes are ignored, as Stripe does."""
    if len(header) > _MAX_HEADER_LENGTH:
        raise SignatureInvalid("malformed", f"{SIGNATURE_HEADER} is too long")
    timestamp: int | None = None
    candidates: list[bytes] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureInvalid("malformed", f"{item.strip()!r} is not name=value")
        if name == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise SignatureInvalid("malformed", "the timestamp must be one integer")
            timestamp = int(value)
        elif name == SCHEME and value:
            candidates.append(value.encode("utf-8", "surrogateescape"))
    if timestamp is None:
        raise SignatureInvalid("malformed", f"no timestamp in {SIGNATURE_HEADER}")
    return timestamp, candidates


def _check_secret(secret: str) -> None:
    if not isinstance(secret, str) or not secret:
        raise ValueError("a non-empty signing secret is required")
