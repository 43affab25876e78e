"""Make a running fake Stripe server deliver its webhooks to oms (dev and demo only).

    python -m fakes.stripe_webhook --api-base http://127.0.0.1:8420 \\
        --url http://127.0.0.1:8000/api/v1/payments/stripe/webhook/ --secret whsec_... \\
        [--wait SECONDS]

Registers endpoint ``oms`` (``register_webhook_endpoint()``), trying again for up to
``--wait`` seconds while the server does not answer yet (a compose service may start
before the fake server listens). Standard library only: it needs no localstripe.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from fakes.stripe_server import register_webhook_endpoint


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakes.stripe_webhook", description=__doc__)
    parser.add_argument("--api-base", required=True, help="the fake server's URL")
    parser.add_argument("--url", required=True, help="where to deliver (oms's webhook URL)")
    parser.add_argument("--secret", required=True, help="the signing secret oms checks")
    parser.add_argument("--wait", type=float, default=0.0, help="retry this long (seconds)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            register_webhook_endpoint(args.api_base, url=args.url, secret=args.secret)
        except OSError as error:
            if time.monotonic() >= deadline:
                print(f"fake Stripe at {args.api_base}: {error}", file=sys.stderr)
                return 1
            time.sleep(0.5)
            continue
        print(f"fake Stripe at {args.api_base} delivers webhooks to {args.url}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
