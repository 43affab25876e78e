"""Command-line options."""

import argparse
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.payment_fake import parse_ports

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/oms_bench"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark checkout (POST /api/v1/orders/) under gunicorn + PostgreSQL.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument(
        "--worker-class",
        choices=["sync", "gthread", "uvicorn", "granian", "granian-wsgi"],
        default="sync",
        help="the server: gunicorn sync or gthread workers (config.wsgi); gunicorn with "
        "uvicorn workers (uvicorn_worker.UvicornWorker on config.asgi, DATABASE_POOL=1); "
        "granian on config.asgi (DATABASE_POOL=1) or on config.wsgi",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per gthread worker; granian's blocking threads per worker",
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--duration", type=float, default=20.0, help="checkout phase, seconds")
    parser.add_argument(
        "--read-duration", type=float, default=10.0, help="each GET phase, seconds (0: skip)"
    )
    parser.add_argument(
        "--requests", type=int, default=None, help="cap on requests per phase (all clients)"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds, discarded")
    parser.add_argument(
        "--ref",
        default=None,
        help="benchmark this git commit (exported with git archive) instead of the working tree",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--settings", default="config.settings.production", help="DJANGO_SETTINGS_MODULE"
    )
    parser.add_argument("--products", type=int, default=100, help="catalogue size")
    parser.add_argument(
        "--hot-products",
        type=int,
        default=0,
        help="draw order lines from only the first N products (stock-row contention); 0: all",
    )
    parser.add_argument(
        "--stock-buckets",
        type=int,
        default=1,
        help="split the stock items of the hot products (--hot-products; all when 0) over "
        "N bucket rows (manage.py stock_buckets)",
    )
    parser.add_argument("--warehouses", type=int, default=3)
    parser.add_argument("--stock", type=int, default=1_000_000, help="units per stock item")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument(
        "--history-orders",
        type=int,
        default=1_000,
        help="orders of one more customer, whose first page GET /api/v1/orders/ reads (0: none)",
    )
    parser.add_argument(
        "--product-list-cache",
        type=int,
        default=0,
        metavar="SECONDS",
        help="PRODUCT_LIST_CACHE_SECONDS for the server (0: every product list is read from "
        "the database); shared across workers with --api-key-cache's Redis, else per process",
    )
    parser.add_argument(
        "--read-orders",
        type=int,
        default=0,
        metavar="N",
        help="the order detail phase reads the last N orders the checkout phase made, "
        "round robin (with --conditional each is a 304 once its client has read it); 0: "
        "all of them, so most reads are a client's first of that order (200)",
    )
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="read phases send If-None-Match with the ETag each client last got (304s)",
    )
    parser.add_argument(
        "--soak",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after the phases, a mixed load (reads and checkouts) this long, sampling each "
        "gunicorn worker's RSS; 600 for the 10-minute soak (0: skip)",
    )
    parser.add_argument(
        "--soak-interval", type=float, default=5.0, help="seconds between RSS samples"
    )
    parser.add_argument("--max-lines", type=int, default=3, help="lines per order: 1..N")
    parser.add_argument(
        "--inprocess-iterations",
        type=int,
        default=200,
        help="checkouts per in-process timing loop (0: skip; statements are always counted)",
    )
    parser.add_argument(
        "--profile", type=int, default=0, help="cProfile N in-process order_place calls"
    )
    parser.add_argument(
        "--profile-target",
        choices=["service", "request"],
        default="service",
        help="profile order_place alone, or the whole POST through the WSGI app",
    )
    parser.add_argument(
        "--profile-dump",
        default="",
        metavar="FILE",
        help="also write the cProfile's raw stats to FILE (for pstats: callers, callees)",
    )
    parser.add_argument(
        "--profile-clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="cpu: this process's CPU time (database waits and preemption count ~0); wall",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="rows per profile table")
    parser.add_argument("--show-queries", action="store_true", help="print the SQL per checkout")
    parser.add_argument("--no-http", action="store_true", help="skip gunicorn and the load")
    parser.add_argument(
        "--api-key-cache",
        default="",
        metavar="REDIS_URL",
        help="cache API keys (API_KEY_CACHE_SECONDS=60) in this Redis, under a key prefix "
        "of this run's own; empty: keys are read from the database on every request",
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the pgbench database floor phase"
    )
    parser.add_argument(
        "--floor-duration",
        type=float,
        default=None,
        help="pgbench floor phase, seconds (default: --duration)",
    )
    parser.add_argument(
        "--floor-clients",
        type=int,
        default=0,
        help="pgbench connections (0: as many as gunicorn has workers x threads)",
    )
    parser.add_argument(
        "--floor-variants",
        type=int,
        default=20,
        help="checkouts captured for the floor, one pgbench script each",
    )
    parser.add_argument(
        "--payment",
        action="store_true",
        help="every checkout sends payment_method pm_card_visa and must come back 201 with "
        "its payment authorized, by a fake provider this run starts (issue 11's checkout); "
        "without: orders are placed unpaid (pending_payment)",
    )
    parser.add_argument(
        "--payment-fake",
        choices=["responder", "localstripe"],
        default="responder",
        help="with --payment: benchmarks.stripe_responder (answers at once, ~0.15 ms CPU per "
        "authorization) or the project's localstripe fake (fakes.stripe_server, several ms)",
    )
    parser.add_argument(
        "--ports",
        default="",
        metavar="LOW-HIGH",
        help="loopback ports for the server and the payment fake (empty: any free port)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed for the load")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = parser.parse_args(argv)
    try:
        args.port_range = parse_ports(args.ports)
    except ValueError:
        parser.error("--ports takes LOW-HIGH, e.g. 18400-18499")
    if args.json is not None:
        args.json = args.json.resolve()  # the run changes directory into the code under test
    if "bench" not in (urlsplit(args.database_url).path or ""):
        parser.error("the database name must contain 'bench': this script drops and recreates it")
    if min(args.history_orders, args.product_list_cache, args.soak, args.read_orders) < 0:
        parser.error(
            "--history-orders, --product-list-cache, --soak and --read-orders must be at least 0"
        )
    if args.soak_interval <= 0:
        parser.error("--soak-interval must be positive")
    if args.stock_buckets < 1:
        parser.error("--stock-buckets must be at least 1")
    if args.workers < 1 or args.clients < 1 or args.threads < 1:
        parser.error("--workers, --clients and --threads must be at least 1")
    if args.worker_class in ("sync", "uvicorn") and args.threads != 1:
        parser.error("--threads needs --worker-class gthread, granian or granian-wsgi")
    if (
        args.max_lines < 1
        or min(args.products, args.hot_products or args.products) < args.max_lines
    ):
        parser.error("--products and --hot-products must be at least --max-lines (>= 1)")
    return args
