"""CPU per authorization of a payment fake, read from /proc of the fake's process.

    python -m benchmarks.fake_cost [--fake responder|localstripe] [--batches 200,200,600,1000]
        [--connection new|keep-alive] [--ports 18400-18499]

Each authorization is what a checkout sends: payments.gateways.stripe.StripeGateway.authorize,
a PaymentIntent created and confirmed with manual capture, from 2 client threads. With
`--connection new` (the default) every call gets its own gateway, so a new connection
each (as payments.provider.payment_gateway() did until 2026-11-29); with `keep-alive`
one gateway is shared, as payment_gateway() now shares one per process and
configuration. The batches run one after the other against the same
fake, so a fake whose cost grows with the intents it holds shows it.
"""

import argparse
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.payload import PAYMENT_METHOD
from benchmarks.payment_fake import parse_ports, payment_fake


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fake_cost")
    parser.add_argument("--fake", choices=["responder", "localstripe"], default="responder")
    parser.add_argument("--batches", default="200,200,600,1000")
    parser.add_argument("--connection", choices=["new", "keep-alive"], default="new")
    parser.add_argument("--ports", default="", metavar="LOW-HIGH")
    args = parser.parse_args(argv)
    from payments.gateways.stripe import StripeGateway

    batches = [int(size) for size in args.batches.split(",")]
    with (
        tempfile.TemporaryDirectory(prefix="oms-fake-cost-") as scratch,
        payment_fake(args.fake, Path(scratch) / "fake.log", parse_ports(args.ports)) as fake,
    ):
        shared = StripeGateway(api_key="sk_test_bench", api_base=fake.url)

        def authorize(_: int) -> None:
            gateway = (
                shared
                if args.connection == "keep-alive"
                else StripeGateway(api_key="sk_test_bench", api_base=fake.url)
            )
            intent = gateway.authorize(
                amount=1234,
                currency="eur",
                payment_method=PAYMENT_METHOD,
                idempotency_key=uuid.uuid4().hex,
                metadata={"order_id": str(uuid.uuid4())},
            )
            if intent.status != "requires_capture":
                raise RuntimeError(f"not authorized: {intent}")
            if gateway is not shared:
                gateway.close()

        done = 0
        for size in batches:
            cpu_before, started = fake.cpu_seconds(), time.perf_counter()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(authorize, range(size)))
            cpu, wall = fake.cpu_seconds() - cpu_before, time.perf_counter() - started
            print(
                f"{args.fake} ({args.connection} connection), intents {done + 1}-{done + size}: "
                f"{1000 * cpu / size:.2f} ms fake CPU per authorization, {size / wall:.0f}/s"
            )
            done += size
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
