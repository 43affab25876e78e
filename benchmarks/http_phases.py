"""Start the web server, drive the phases against it, stop it."""

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from benchmarks.database import database_name
from benchmarks.load import UNPAID_CREATED, LoadResult, LoadSpec, run_load
from benchmarks.payload import PAYMENT_METHOD
from benchmarks.payment_fake import PaymentFake
from benchmarks.phases import PhaseReport, run_phase
from benchmarks.report import print_phase
from benchmarks.seed import Seeded
from benchmarks.server import Server
from benchmarks.soak import WorkerMemory, print_soak, sample_rss


def _orders_made(result: LoadResult) -> int:
    """Orders a phase's checkouts acknowledged (a 201, paid or, counted as an error, not)."""
    return result.statuses.get("201", 0) + result.statuses.get(UNPAID_CREATED, 0)


def http_phases(
    args: argparse.Namespace,
    env: dict[str, str],
    seeded: Seeded,
    log_dir: Path,
    soak: list[WorkerMemory] | None = None,
    fake: PaymentFake | None = None,
) -> tuple[list[PhaseReport], int]:
    """Start the web server, run the phases (and the soak, whose per-worker memory is appended
    to `soak`), stop it. Return the reports and orders acknowledged. `fake`: the payment
    fake of a --payment run, whose CPU each phase reports."""
    from django.db import connections

    database = database_name(args.database_url)
    connections.close_all()
    server = Server(args, env, log_dir / "server.log")
    reports: list[PhaseReport] = []
    acknowledged = 0
    skus = seeded.skus[: args.hot_products] if args.hot_products else seeded.skus
    try:
        server.wait_ready()
        print(
            f"\n{server.name} {args.worker_class} x{args.workers}"
            f"{f' ({args.threads} threads)' if args.threads > 1 else ''} on "
            f"127.0.0.1:{server.port}, {args.clients} client threads in one process"
        )
        base = LoadSpec(
            port=server.port,
            kind="checkout",
            duration=args.warmup,
            max_requests=None,
            clients=args.clients,
            seed=args.seed,
            tokens=seeded.tokens,
            skus=skus,
            max_lines=args.max_lines,
            orders=[],
            history_token=seeded.history_token,
            conditional=args.conditional,
            payment_method=PAYMENT_METHOD if args.payment else "",
        )
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            pool.submit(time.sleep, 0).result()  # start the client process before timing
            created: list[tuple[str, str]] = []
            if args.warmup > 0:
                warm = pool.submit(run_load, base).result()
                created.extend(warm.created)
                acknowledged += _orders_made(warm)
                pool.submit(
                    run_load, replace(base, kind="products", duration=min(args.warmup, 1.0))
                ).result()
            checkout = replace(
                base, duration=args.duration, max_requests=args.requests, seed=args.seed + 1
            )
            report, result = run_phase(
                "POST /api/v1/orders/", checkout, server, database, pool, fake
            )
            acknowledged += _orders_made(result)
            created.extend(result.created)
            reports.append(report)
            print_phase(report)
            if args.read_duration > 0:
                reads = replace(
                    checkout,
                    duration=args.read_duration,
                    seed=args.seed + 2,
                    orders=created[-args.read_orders :] if args.read_orders else created,
                )
                history = f"GET /api/v1/orders/ ({seeded.history_orders} orders' first page)"
                for name, kind in (
                    ("GET /api/v1/products/", "products"),
                    ("GET /api/v1/orders/{id}/", "order"),
                    (history, "customer_orders"),
                ):
                    if (kind == "order" and not created) or (
                        kind == "customer_orders" and not seeded.history_token
                    ):
                        continue
                    report, _ = run_phase(
                        name, replace(reads, kind=kind), server, database, pool, fake
                    )
                    reports.append(report)
                    print_phase(report)
            if args.soak > 0:
                mixed = replace(
                    checkout,
                    kind="mixed",
                    duration=args.soak,
                    max_requests=None,
                    seed=args.seed + 3,
                    orders=created,
                )
                workers, result = sample_rss(
                    server.worker_pids, pool.submit(run_load, mixed), args.soak_interval
                )
                acknowledged += _orders_made(result)
                print_soak(args.soak, workers, result)
                if soak is not None:
                    soak.extend(workers)
    finally:
        server.stop()
    return reports, acknowledged
