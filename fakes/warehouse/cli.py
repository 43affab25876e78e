"""The command line: ``python -m fakes.warehouse --port 8430 --secret S ...``."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import fakes.warehouse
from fakes.warehouse.service import FakeWarehouse

READY_PREFIX = "fake-warehouse ready "


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; print the ready line once listening."""
    parser = argparse.ArgumentParser(
        prog="python -m fakes.warehouse",
        description=fakes.warehouse.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback IPv4 address")
    parser.add_argument(
        "--container",
        action="store_true",
        help="allow a non-loopback --host (only inside a private container network)",
    )
    parser.add_argument("--secret", required=True, help="the HMAC secret shared with oms")
    parser.add_argument("--ship-after", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--deliver-after", type=float, default=4.0, metavar="SECONDS")
    parser.add_argument("--reject-skus", type=_sku_list, default=[], metavar="A,B")
    parser.add_argument("--no-auto-callbacks", action="store_true")
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--callback-attempts", type=int, default=5)
    parser.add_argument("--callback-backoff", type=float, default=0.5, metavar="SECONDS")
    parser.add_argument("--verbose", action="store_true", help="log requests and callbacks")
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
    try:
        fake = FakeWarehouse(
            secret=args.secret,
            host=args.host,
            port=args.port,
            ship_after=args.ship_after,
            deliver_after=args.deliver_after,
            reject_skus=args.reject_skus,
            auto_callbacks=not args.no_auto_callbacks,
            hang_seconds=args.hang_seconds,
            callback_attempts=args.callback_attempts,
            callback_backoff=args.callback_backoff,
            container=args.container,
        )
    except ValueError as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    fake.start()
    print(f"{READY_PREFIX}{fake.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


def _loopback_host(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ipaddress.AddressValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IPv4 address") from exc
    if not address.is_loopback:
        raise argparse.ArgumentTypeError(f"{value} is not a loopback address; use 127.0.0.1")
    return value


def _sku_list(value: str) -> list[str]:
    return [sku.strip() for sku in value.split(",") if sku.strip()]
