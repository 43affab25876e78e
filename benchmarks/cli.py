"""Entry point: run the whole benchmark."""

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.correctness import correctness_check
from benchmarks.database import database_drop, database_name, database_recreate
from benchmarks.django_env import django_environment, django_setup
from benchmarks.floor import run_floor
from benchmarks.http_phases import http_phases
from benchmarks.inprocess import inprocess_analysis
from benchmarks.machine import machine_description
from benchmarks.options import parse_args
from benchmarks.payment_fake import PaymentFake, payment_fake
from benchmarks.payment_fake import describe as describe_payment
from benchmarks.phases import PhaseReport
from benchmarks.procfs import background_load
from benchmarks.report import floor_ratio, print_floor, print_inprocess
from benchmarks.seed import seed
from benchmarks.soak import WorkerMemory
from benchmarks.source import REPO_ROOT, git, source_export


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="oms-bench-") as scratch:
        if args.ref:
            args.source_root = Path(scratch) / "src"
            commit = source_export(args.ref, args.source_root)
            args.source = f"commit {commit[:12]} ({args.ref})"
        else:
            args.source_root = REPO_ROOT
            dirty = " + uncommitted changes" if git("status", "--porcelain") else ""
            args.source = f"working tree at {git('rev-parse', '--short=12', 'HEAD')}{dirty}"
        return run(args, Path(scratch))


def run(args: argparse.Namespace, scratch: Path) -> int:
    if not args.payment:
        return run_with(args, scratch, None)
    with payment_fake(args.payment_fake, scratch / "payment-fake.log", args.port_range) as fake:
        print(f"Payment fake: {args.payment_fake} at {fake.url} (pid {fake.pid})")
        return run_with(args, scratch, fake)


def run_environment(args: argparse.Namespace, fake: PaymentFake | None) -> dict[str, str]:
    """The server's (and this process's) environment: with a payment fake, pointed at it."""
    env = django_environment(args)
    if fake is not None:
        env.update(fake.environment())
    return env


def run_with(args: argparse.Namespace, scratch: Path, fake: PaymentFake | None) -> int:
    env = run_environment(args, fake)
    if env.get("PROMETHEUS_MULTIPROC_DIR"):
        # The run's metrics (this process's, the servers' in their own directories) stay
        # in its scratch directory, out of the caller's.
        (scratch / "metrics").mkdir(exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(scratch / "metrics")
    started = time.perf_counter()
    print(f"Benchmarking {args.source}; checkout: {describe_payment(args)}")
    print(f"Recreating {database_name(args.database_url)} and migrating ...", flush=True)
    database_recreate(args.database_url)
    exit_code = 0
    try:
        django_setup(env, args.source_root)
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0, interactive=False)
        seeded = seed(args)
        machine = machine_description(args.database_url)
        machine["source"] = args.source
        print("Machine: " + "; ".join(f"{key} {value}" for key, value in machine.items()))
        print(
            f"Seeded {args.warehouses} warehouses, {len(seeded.skus)} products "
            f"({args.hot_products or 'all'} ordered from"
            + (f", stock in {args.stock_buckets} buckets" if args.stock_buckets > 1 else "")
            + f"), {args.users} users, "
            f"one customer with {seeded.history_orders} orders "
            f"in {time.perf_counter() - started:.1f}s"
        )
        inprocess = inprocess_analysis(args, seeded, fake)
        print_inprocess(inprocess)
        reports: list[PhaseReport] = []
        soak: list[WorkerMemory] = []
        acknowledged = 0
        if not args.no_http:
            background = background_load()
            print(f"\nBackground load before the HTTP phases: {background:.0f}% of all cores")
            machine["background_load"] = f"{background:.0f}%"
            reports, acknowledged = http_phases(args, env, seeded, scratch, soak, fake)
        machine["checkout"] = describe_payment(args)
        correctness = correctness_check(
            inprocess.orders_created + acknowledged + seeded.history_orders,
            history_customer_id=seeded.history_customer_id,
            paid=args.payment,
        )
        verdict = "OK" if correctness.ok else "FAILED: " + "; ".join(correctness.problems)
        print(
            f"\nCorrectness ({correctness.orders} orders, {correctness.stock_items} stock items): "
            f"{verdict}"
        )
        exit_code = 0 if correctness.ok else 1
        floor = None
        if not args.no_floor:
            print(
                f"\nDatabase floor: capturing {args.floor_variants} checkouts, then pgbench ...",
                flush=True,
            )
            floor = run_floor(args, seeded, scratch)
            checkout_rate = next(
                (r.ok_throughput for r in reports if r.name == "POST /api/v1/orders/"), None
            )
            print_floor(floor, checkout_rate)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
                        "machine": machine,
                        "inprocess": inprocess.__dict__ | {"profile_text": None},
                        "phases": [report.__dict__ for report in reports],
                        "correctness": correctness.problems,
                        "floor": floor.__dict__ if floor else None,
                        "soak": {
                            "seconds": args.soak,
                            "workers": [worker.as_dict() for worker in soak],
                        },
                        "checkout_per_floor": floor_ratio(reports, floor),
                    },
                    indent=2,
                )
            )
        connections.close_all()
    finally:
        if args.drop:
            database_drop(args.database_url)
            print(f"Dropped {database_name(args.database_url)}")
    return exit_code
