"""Checkout benchmark: gunicorn + PostgreSQL, driven over loopback HTTP.

What it does, in order:

1. (Re)creates its own PostgreSQL database (the name must contain "bench"), migrates it
   and seeds warehouses, products, stock and users with API tokens.
2. In-process analysis: SQL statements per checkout (django.test.utils.CaptureQueriesContext,
   for the service alone and for the whole request through the WSGI app), Python vs
   database time per checkout, and with --profile a cProfile of an order_place loop
   (--profile-target request: of the whole POST).
3. Starts gunicorn (config.wsgi) on a free loopback port, warms it up, then drives
   POST /api/v1/orders/ (own Idempotency-Key each, 1-3 lines), GET /api/v1/products/ and
   GET /api/v1/orders/{id}/ from a closed-loop load generator: one separate process with
   --clients threads, each using http.client. Each phase is bounded by --duration (or
   --read-duration) and --requests.
4. Reports throughput, latency percentiles, status counts, CPU per request by process
   group, gunicorn worker memory, then checks stock invariants and stops gunicorn.

The load generator competes with gunicorn and PostgreSQL for the same cores, and other
processes on the machine do too: the "other" CPU column shows how much of the machine
went elsewhere during a phase, and "ceiling" what the measured CPU per request would
allow on otherwise idle cores.

The code under test is the working tree, or with --ref a commit exported by git archive
(useful while others edit the working tree). Settings: config.settings.production
(DEBUG off, persistent connections) with a throwaway DJANGO_SECRET_KEY.

Example (results in benchmarks/RESULTS.md):

    .venv/bin/python scripts/benchmark.py --ref HEAD --workers 2 --clients 4 --duration 20 --drop
"""

import argparse
import cProfile
import http.client
import io
import json
import os
import pstats
import random
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/oms_bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SHIPPING_ADDRESS = {
    "name": "Bench Customer",
    "line1": "1 Loopback Road",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


# --------------------------------------------------------------------------------------
# Options


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark checkout (POST /api/v1/orders/) under gunicorn + PostgreSQL.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--worker-class", choices=["sync", "gthread"], default="sync", help="gunicorn worker"
    )
    parser.add_argument("--threads", type=int, default=1, help="threads per gthread worker")
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
    parser.add_argument("--warehouses", type=int, default=3)
    parser.add_argument("--stock", type=int, default=1_000_000, help="units per stock item")
    parser.add_argument("--users", type=int, default=50)
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
        "--profile-clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="cpu: this process's CPU time (database waits and preemption count ~0); wall",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="rows per profile table")
    parser.add_argument("--show-queries", action="store_true", help="print the SQL per checkout")
    parser.add_argument("--no-http", action="store_true", help="skip gunicorn and the load")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the load")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = parser.parse_args(argv)
    if args.json is not None:
        args.json = args.json.resolve()  # the run changes directory into the code under test
    if "bench" not in (urlsplit(args.database_url).path or ""):
        parser.error("the database name must contain 'bench': this script drops and recreates it")
    if args.workers < 1 or args.clients < 1 or args.threads < 1:
        parser.error("--workers, --clients and --threads must be at least 1")
    if args.worker_class == "sync" and args.threads != 1:
        parser.error("--threads needs --worker-class gthread")
    if (
        args.max_lines < 1
        or min(args.products, args.hot_products or args.products) < args.max_lines
    ):
        parser.error("--products and --hot-products must be at least --max-lines (>= 1)")
    return args


# --------------------------------------------------------------------------------------
# /proc readings (Linux)


def proc_stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3, state, is index 0)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def proc_cpu_seconds(pid: int) -> float:
    fields = proc_stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def proc_children(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == parent:
                children.append(int(entry.name))
    return sorted(children)


def proc_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS) and, when readable, Pss of one process, in KiB."""
    memory: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                memory[name] = int(value.split()[0])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                memory["Pss"] = int(line.split()[1])
    except OSError:
        pass
    return memory


def machine_busy_seconds() -> float:
    """CPU seconds spent not idle, summed over all cores, since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    # guest time is already included in user/nice.
    return (sum(values[:8]) - idle) / CLOCK_TICKS


# --------------------------------------------------------------------------------------
# The benchmark database


def _admin_url(database_url: str) -> str:
    return urlunsplit(urlsplit(database_url)._replace(path="/postgres"))


def _database_name(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/")


def database_recreate(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    name = sql.Identifier(_database_name(database_url))
    with psycopg.connect(_admin_url(database_url), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        for attempt in range(10):
            try:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
                return
            except psycopg.errors.ObjectInUse:
                # Someone else is copying template1 right now (test runs create databases).
                if attempt == 9:
                    raise
                time.sleep(0.5)


def database_drop(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    name = sql.Identifier(_database_name(database_url))
    with psycopg.connect(_admin_url(database_url), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def postgres_version(database_url: str) -> str:
    import psycopg

    with psycopg.connect(_admin_url(database_url)) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        settings_rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections') ORDER BY name"
        ).fetchall()
    settings_text = ", ".join(f"{name}={value}" for name, value in settings_rows)
    return f"PostgreSQL {row[0] if row else '?'} ({settings_text})"


# --------------------------------------------------------------------------------------
# Django, in this process: migrate, seed, analyse, check


def django_environment(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=args.database_url,
        DJANGO_SETTINGS_MODULE=args.settings,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=env.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONPATH=str(args.source_root),
    )
    return env


def django_setup(env: dict[str, str], source_root: Path) -> None:
    os.environ.update(env)
    # Ahead of the editable install's finder, which maps the packages to the work tree;
    # and in it, because Celery's Django fixup puts the current directory first on sys.path.
    sys.path.insert(0, str(source_root))
    os.chdir(source_root)
    import django
    from django.conf import settings

    django.setup()
    import orders

    if not Path(orders.__file__ or "").resolve().is_relative_to(source_root.resolve()):
        raise SystemExit(f"orders imported from {orders.__file__}, not from {source_root}")
    if settings.DEBUG:
        raise SystemExit("DEBUG is on in these settings; benchmark with DEBUG off")


@dataclass
class Seeded:
    tokens: list[str]
    skus: list[str]
    user_ids: list[int]


def seed(args: argparse.Namespace) -> Seeded:
    """Warehouses, products, stock (through stock_adjust, so the ledger agrees), users."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    from core.actors import Actor
    from inventory.models import Product
    from inventory.services import stock_adjust, warehouse_create

    rng = random.Random(args.seed)  # noqa: S311 - test data, not secrets
    system = Actor.system(request_id="benchmark-seed")
    codes = [f"bench-w{i}" for i in range(1, args.warehouses + 1)]
    for i, code in enumerate(codes):
        warehouse_create(
            code=code,
            name=f"Benchmark DC {i + 1}",
            region="bench",
            priority=10 * (args.warehouses - i),
            actor=system,
        )
    products = Product.objects.bulk_create(
        Product(
            sku=f"BENCH-{i:05d}",
            name=f"Benchmark product {i}",
            price=rng.randrange(500, 20_000),
            currency="EUR",
        )
        for i in range(args.products)
    )
    for product in products:
        # Each product sits in up to two warehouses, so allocation has a choice.
        for code in rng.sample(codes, min(2, len(codes))):
            stock_adjust(
                sku=product.sku,
                warehouse_code=code,
                quantity=args.stock,
                reason="benchmark stock",
                actor=system,
            )
    unusable = make_password(None)
    users = User.objects.bulk_create(
        User(username=f"bench-{i:04d}", email=f"bench-{i:04d}@example.com", password=unusable)
        for i in range(args.users)
    )
    tokens = Token.objects.bulk_create(Token(key=Token.generate_key(), user=user) for user in users)
    return Seeded(
        tokens=[token.key for token in tokens],
        skus=[product.sku for product in products],
        user_ids=[user.pk for user in users],
    )


def random_lines(rng: random.Random, skus: Sequence[str], max_lines: int) -> list[dict[str, Any]]:
    count = rng.randint(1, max_lines)
    return [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in rng.sample(skus, count)]


class DbClock:
    """Time spent waiting on PostgreSQL: every cursor execute, commit and health check.

    The execute time includes psycopg's own work around the round trip, so "Python" time
    computed from it is app + Django + DRF time, a slight underestimate.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.statements = 0
        self.commits = 0
        self.commit_seconds = 0.0
        self.health_checks = 0

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - start
            self.statements += 1

    @contextmanager
    def installed(self) -> Iterator["DbClock"]:
        from django.db import connection

        original_commit = getattr(connection, "_commit")  # noqa: B009 - private, untyped
        original_is_usable = connection.is_usable

        def timed_commit() -> None:
            start = time.perf_counter()
            try:
                original_commit()
            finally:
                elapsed = time.perf_counter() - start
                self.seconds += elapsed
                self.commit_seconds += elapsed
                self.commits += 1

        def timed_is_usable() -> bool:
            start = time.perf_counter()
            try:
                return bool(original_is_usable())
            finally:
                self.seconds += time.perf_counter() - start
                self.health_checks += 1

        setattr(connection, "_commit", timed_commit)  # noqa: B010 - instance patch, undone below
        setattr(connection, "is_usable", timed_is_usable)  # noqa: B010
        try:
            with connection.execute_wrapper(self):
                yield self
        finally:
            delattr(connection, "_commit")
            delattr(connection, "is_usable")


class InProcessClient:
    """Call the WSGI application directly: the gunicorn request path minus HTTP parsing."""

    def __init__(self) -> None:
        from django.core.wsgi import get_wsgi_application

        self.app = get_wsgi_application()

    def request(
        self, method: str, path: str, *, token: str, body: Any = None, key: str | None = None
    ) -> tuple[int, Any]:
        payload = b"" if body is None else json.dumps(body).encode()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_AUTHORIZATION": f"Token {token}",
            "HTTP_ACCEPT": "application/json",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(payload)),
            "wsgi.input": io.BytesIO(payload),
            "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        if key is not None:
            environ["HTTP_IDEMPOTENCY_KEY"] = key
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[..., Any]:
            statuses.append(status)
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # sends request_finished, as gunicorn does
        return int(statuses[0].split()[0]), json.loads(content) if content else None


@dataclass
class InProcessReport:
    queries: dict[str, dict[str, int]] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    profile_areas: list[tuple[str, float]] = field(default_factory=list)
    profile_text: str = ""
    profile_label: str = ""
    orders_created: int = 0


def _statement_kind(sql: str) -> str:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    if head in ("BEGIN", "COMMIT", "ROLLBACK"):
        return head
    if head in ("SAVEPOINT", "RELEASE"):
        return "SAVEPOINT"
    return "SQL"


def _capture(run: Callable[[], Any]) -> tuple[list[str], dict[str, int]]:
    """Run once; return the statements captured and their count per kind.

    Django 5 logs BEGIN/COMMIT/ROLLBACK too, so every entry is one round trip to
    PostgreSQL; the connection health check (CONN_HEALTH_CHECKS, a raw "SELECT 1" at
    the first query of a request on a reused connection) is not logged and is counted
    separately.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    clock = DbClock()
    with clock.installed(), CaptureQueriesContext(connection) as captured:
        run()
    statements = [query["sql"] for query in captured.captured_queries]
    kinds = Counter(_statement_kind(sql) for sql in statements)
    kinds["health check"] = clock.health_checks
    kinds["round trips"] = len(statements) + clock.health_checks
    return statements, dict(kinds)


def inprocess_analysis(args: argparse.Namespace, seeded: Seeded) -> InProcessReport:
    from django.contrib.auth.models import User

    from core.actors import Actor
    from flows.place import OrderLineRequest, order_place
    from orders.models import Order

    report = InProcessReport()
    rng = random.Random(args.seed + 7)  # noqa: S311 - test data, not secrets
    user = User.objects.get(pk=seeded.user_ids[0])
    token = seeded.tokens[0]
    actor = Actor(user=user, request_id="benchmark-inprocess")
    client = InProcessClient()
    pool = seeded.skus[: args.hot_products] if args.hot_products else seeded.skus

    def place(lines: list[dict[str, Any]]) -> Order:
        report.orders_created += 1
        return order_place(
            customer=user,
            email=user.email,
            shipping_address=dict(SHIPPING_ADDRESS),
            lines=[OrderLineRequest(line["sku"], line["quantity"]) for line in lines],
            actor=actor,
        )

    created_ids: list[str] = []

    def post(lines: list[dict[str, Any]]) -> tuple[int, Any]:
        status, body = client.request(
            "POST",
            "/api/v1/orders/",
            token=token,
            key=uuid.uuid4().hex,
            body={"lines": lines, "email": user.email, "shipping_address": SHIPPING_ADDRESS},
        )
        if status != 201:
            raise RuntimeError(f"in-process checkout failed: {status} {body}")
        report.orders_created += 1
        created_ids.append(body["id"])
        return status, body

    # Warm caches (URL resolver, serializers, connection) before counting.
    place(random_lines(rng, pool, args.max_lines))
    counted: list[tuple[str, Callable[[], Any]]] = [
        ("order_place, 1 line", lambda: place([{"sku": pool[0], "quantity": 1}])),
        (
            "order_place, 3 lines",
            lambda: place([{"sku": sku, "quantity": 1} for sku in pool[:3]]),
        ),
        # Not counted: warms the request path.
        ("", lambda: post(random_lines(rng, pool, args.max_lines))),
        ("POST /api/v1/orders/, 1 line", lambda: post([{"sku": pool[0], "quantity": 1}])),
        (
            "POST /api/v1/orders/, 3 lines",
            lambda: post([{"sku": sku, "quantity": 1} for sku in pool[:3]]),
        ),
        ("GET /api/v1/products/", lambda: client.request("GET", "/api/v1/products/", token=token)),
        (
            "GET /api/v1/orders/{id}/",
            lambda: client.request("GET", f"/api/v1/orders/{created_ids[-1]}/", token=token),
        ),
    ]
    for label, run in counted:
        if not label:
            run()
            continue
        statements, kinds = _capture(run)
        report.queries[label] = kinds
        if args.show_queries:
            print(f"\n-- {label}: {kinds}")
            for number, statement in enumerate(statements, 1):
                print(f"  {number:2d}. {statement[:220]}")

    def timed(label: str, run: Callable[[], Any]) -> None:
        clock = DbClock()
        iterations = args.inprocess_iterations
        with clock.installed():
            start = time.perf_counter()
            cpu_start = time.process_time()
            for _ in range(iterations):
                run()
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
        report.timings[label] = {
            "iterations": iterations,
            "wall_ms": 1000 * wall / iterations,
            "db_ms": 1000 * clock.seconds / iterations,
            "commit_ms": 1000 * clock.commit_seconds / iterations,
            "python_ms": 1000 * (wall - clock.seconds) / iterations,
            "process_cpu_ms": 1000 * cpu / iterations,
        }

    if args.inprocess_iterations > 0:
        timed("order_place (service)", lambda: place(random_lines(rng, pool, args.max_lines)))
        timed("POST /api/v1/orders/ (WSGI)", lambda: post(random_lines(rng, pool, args.max_lines)))

    if args.profile:
        timer = time.process_time if args.profile_clock == "cpu" else time.perf_counter
        profiler = cProfile.Profile(timer)
        lines_list = [random_lines(rng, pool, args.max_lines) for _ in range(args.profile)]
        run_one = place if args.profile_target == "service" else post
        profiler.enable()
        for lines in lines_list:
            run_one(lines)
        profiler.disable()
        report.profile_areas, report.profile_text = profile_summary(
            profiler, args.profile, args.profile_top, args.source_root
        )
        report.profile_label = (
            f"{'order_place' if args.profile_target == 'service' else 'POST /api/v1/orders/'}"
            f" x{args.profile}, {args.profile_clock} clock"
        )
    return report


def _profile_area(filename: str, function: str, source_root: Path) -> str:
    """Group a profiled function into a library or app area."""
    if filename == "~":
        return "C builtins"
    path = filename.replace("\\", "/")
    if "site-packages/" in path:
        parts = path.split("site-packages/", 1)[1].split("/")
        if parts[0] == "psycopg" and function in ("wait", "_execute_send", "_exec_command"):
            # Compiled helpers called from here block on the socket: time waiting on
            # PostgreSQL (and, on a busy machine, for the CPU back) lands in these frames.
            return "psycopg: send/wait on PostgreSQL"
        if parts[0] in ("django", "rest_framework") and len(parts) > 2:
            return "/".join(parts[:3]) if parts[1] == "db" else "/".join(parts[:2])
        return parts[0]
    if path.startswith(str(source_root)):
        return "app: " + "/".join(Path(path).relative_to(source_root).parts[:2])
    return "stdlib: " + Path(path).stem


def profile_summary(
    profiler: cProfile.Profile, iterations: int, top: int, source_root: Path
) -> tuple[list[tuple[str, float]], str]:
    """Own time per area (ms per call of the loop body) and the top functions."""
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    areas: dict[str, float] = {}
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        area = _profile_area(filename, function, source_root)
        areas[area] = areas.get(area, 0.0) + tottime
    ranked = sorted(areas.items(), key=lambda item: -item[1])
    per_call = [(area, 1000 * seconds / iterations) for area, seconds in ranked]
    text = io.StringIO()
    for order in ("tottime", "cumulative"):
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(order).print_stats(top)
    return per_call, text.getvalue()


@dataclass
class CorrectnessReport:
    problems: list[str]
    orders: int
    stock_items: int

    @property
    def ok(self) -> bool:
        return not self.problems


def correctness_check(expected_orders: int) -> CorrectnessReport:
    """Stock invariants after the run; every placed order is fully reserved."""
    from django.db.models import F, Q, Sum
    from django.db.models.functions import Coalesce

    from core.models import IdempotencyKey
    from inventory.models import Reservation, StockItem
    from inventory.selectors import stock_ledger_totals
    from orders.models import Order, OrderLine

    held = Q(reservations__status=Reservation.Status.HELD)
    problems = []
    out_of_range = StockItem.objects.filter(Q(reserved__lt=0) | Q(reserved__gt=F("on_hand")))
    if count := out_of_range.count():
        problems.append(f"{count} stock item(s) with reserved < 0 or reserved > on_hand")
    mismatched = (
        StockItem.objects.annotate(held=Coalesce(Sum("reservations__quantity", filter=held), 0))
        .exclude(reserved=F("held"))
        .count()
    )
    if mismatched:
        problems.append(f"{mismatched} stock item(s) whose reserved != sum of held reservations")
    ledger = stock_ledger_totals()
    counters = {item.pk: (item.on_hand, item.reserved) for item in StockItem.objects.all()}
    drift = [pk for pk, values in counters.items() if ledger.get(pk, (0, 0)) != values]
    if drift:
        problems.append(f"{len(drift)} stock item(s) disagree with the movement ledger")
    unreserved = (
        OrderLine.objects.annotate(held=Coalesce(Sum("reservations__quantity", filter=held), 0))
        .exclude(quantity=F("held"))
        .count()
    )
    if unreserved:
        problems.append(f"{unreserved} order line(s) not exactly covered by held reservations")
    orders = Order.objects.count()
    if orders != expected_orders:
        problems.append(f"{orders} orders in the database, {expected_orders} acknowledged")
    stuck = IdempotencyKey.objects.filter(status=IdempotencyKey.Status.IN_PROGRESS).count()
    if stuck:
        problems.append(f"{stuck} idempotency key(s) left in progress")
    return CorrectnessReport(problems=problems, orders=orders, stock_items=len(counters))


def backend_pids(database: str) -> list[int]:
    """PostgreSQL backends connected to the benchmark database, except this process's."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        )
        return [row[0] for row in cursor.fetchall()]


# --------------------------------------------------------------------------------------
# gunicorn


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    def __init__(self, args: argparse.Namespace, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            args.worker_class,
            "--threads",
            str(args.threads),
            "--backlog",
            "512",
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
        ]
        self.log = log_path.open("wb")
        # Own session: a terminal Ctrl-C reaches this script, which then stops gunicorn.
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command,
            cwd=args.source_root,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers = args.workers

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log_path}:\n{self.log_tail()}")
            if len(self.worker_pids()) >= self.workers:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                    conn.request("GET", "/health/")
                    if conn.getresponse().status == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not ready after {timeout}s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        return proc_children(self.process.pid)

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the group this script started
                self.process.wait(timeout=5)
        self.log.close()


# --------------------------------------------------------------------------------------
# Load generator: runs in its own process (spawned), stdlib only.


@dataclass(frozen=True)
class LoadSpec:
    port: int
    kind: str  # "checkout", "products" or "order"
    duration: float
    max_requests: int | None
    clients: int
    seed: int
    tokens: list[str]
    skus: list[str]
    max_lines: int
    orders: list[tuple[str, str]]  # (token, order id), for "order"


@dataclass
class LoadResult:
    kind: str
    elapsed: float
    latencies: list[float]
    statuses: Counter[str]
    created: list[tuple[str, str]]
    client_cpu: float
    retries: int
    error_samples: list[str]


class _Client:
    """One keep-alive HTTP/1.1 connection. gunicorn's sync workers close it after every
    response (they do not do keep-alive), so those requests pay a loopback connect."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.reused = False

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
        for attempt in (1, 2):
            reused = self.reused
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                self.reused = not response.will_close
                return response.status, data, attempt - 1
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the server closed while idle: retrying is safe
                # (a checkout carries the same Idempotency-Key).
                self.conn.close()
                self.reused = False
                if not reused or attempt == 2:
                    raise
        raise AssertionError("unreachable")


def run_load(spec: LoadSpec) -> LoadResult:
    """Closed loop: each client thread sends its next request when the last one answered."""
    cpu_start = time.process_time()
    stop = threading.Event()
    issued = 0
    issued_lock = threading.Lock()
    latencies: list[list[float]] = [[] for _ in range(spec.clients)]
    statuses: list[Counter[str]] = [Counter() for _ in range(spec.clients)]
    created: list[list[tuple[str, str]]] = [[] for _ in range(spec.clients)]
    retries = [0] * spec.clients
    error_samples: list[str] = []
    start_barrier = threading.Barrier(spec.clients + 1)

    def may_issue() -> bool:
        nonlocal issued
        if spec.max_requests is None:
            return True
        with issued_lock:
            if issued >= spec.max_requests:
                return False
            issued += 1
            return True

    def client_loop(index: int) -> None:
        rng = random.Random(spec.seed * 1_000 + index)  # noqa: S311 - load shape, not secrets
        client = _Client(spec.port)
        sequence = index
        start_barrier.wait()
        while not stop.is_set() and may_issue():
            token = rng.choice(spec.tokens)
            headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
            body = None
            if spec.kind == "checkout":
                method, path = "POST", "/api/v1/orders/"
                headers["Content-Type"] = "application/json"
                headers["Idempotency-Key"] = uuid.uuid4().hex
                number = rng.randrange(len(spec.tokens))
                body = json.dumps(
                    {
                        "lines": random_lines(rng, spec.skus, spec.max_lines),
                        "email": f"bench-{number:04d}@example.com",
                        "shipping_address": SHIPPING_ADDRESS,
                    }
                ).encode()
            elif spec.kind == "products":
                method, path = "GET", "/api/v1/products/"
            else:
                token, order_id = spec.orders[sequence % len(spec.orders)]
                sequence += spec.clients
                headers["Authorization"] = f"Token {token}"
                method, path = "GET", f"/api/v1/orders/{order_id}/"
            started = time.perf_counter()
            try:
                status, data, retried = client.send(method, path, body, headers)
                label = str(status)
                retries[index] += retried
            except OSError as error:  # includes http.client errors on a dead socket
                label, data = type(error).__name__, str(error).encode()
                client = _Client(spec.port)
            latencies[index].append(time.perf_counter() - started)
            statuses[index][label] += 1
            if label == "201" and spec.kind == "checkout":
                created[index].append((token, json.loads(data)["id"]))
            elif not label.startswith("2") and len(error_samples) < 5:
                error_samples.append(f"{label}: {data[:300].decode(errors='replace')}")

    threads = [
        threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(spec.clients)
    ]
    for thread in threads:
        thread.start()
    start_barrier.wait()
    started = time.perf_counter()
    deadline = started + spec.duration
    while any(thread.is_alive() for thread in threads) and time.perf_counter() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return LoadResult(
        kind=spec.kind,
        elapsed=elapsed,
        latencies=[value for per_client in latencies for value in per_client],
        statuses=sum(statuses, Counter()),
        created=[pair for per_client in created for pair in per_client],
        client_cpu=time.process_time() - cpu_start,
        retries=sum(retries),
        error_samples=error_samples,
    )


# --------------------------------------------------------------------------------------
# Phases and reporting


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(-(-fraction * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class PhaseReport:
    name: str
    requests: int
    elapsed: float
    throughput: float
    ok_throughput: float
    latency_ms: dict[str, float]
    statuses: dict[str, int]
    retries: int
    cpu_ms_per_request: dict[str, float]
    machine_busy_pct: float
    # Throughput if these processes had every core to themselves: cores / CPU per request.
    cpu_bound_ceiling: float
    memory_kib: dict[str, int]
    error_samples: list[str]


def run_phase(
    name: str,
    spec: LoadSpec,
    server: Gunicorn,
    database: str,
    pool: ProcessPoolExecutor,
) -> tuple[PhaseReport, LoadResult]:
    workers = server.worker_pids()
    backends = backend_pids(database)
    cpu_before = {pid: proc_cpu_seconds(pid) for pid in [*workers, *backends]}
    busy_before = machine_busy_seconds()
    wall_before = time.perf_counter()
    result = pool.submit(run_load, spec).result()
    wall = time.perf_counter() - wall_before
    busy = machine_busy_seconds() - busy_before
    workers_after = server.worker_pids()
    backends_after = backend_pids(database)
    app_cpu = sum(proc_cpu_seconds(pid) - cpu_before.get(pid, 0.0) for pid in workers_after)
    db_cpu = sum(proc_cpu_seconds(pid) - cpu_before.get(pid, 0.0) for pid in backends_after)
    requests = len(result.latencies)
    per_request = 1000 / max(requests, 1)
    memory = [proc_memory_kib(pid) for pid in workers_after]
    master = proc_memory_kib(server.process.pid)
    ordered = sorted(result.latencies)
    ok = sum(count for status, count in result.statuses.items() if status.startswith("2"))
    report = PhaseReport(
        name=name,
        requests=requests,
        elapsed=result.elapsed,
        throughput=requests / result.elapsed if result.elapsed else 0.0,
        ok_throughput=ok / result.elapsed if result.elapsed else 0.0,
        latency_ms={
            "p50": 1000 * percentile(ordered, 0.50),
            "p95": 1000 * percentile(ordered, 0.95),
            "p99": 1000 * percentile(ordered, 0.99),
            "max": 1000 * (ordered[-1] if ordered else float("nan")),
        },
        statuses=dict(sorted(result.statuses.items())),
        retries=result.retries,
        cpu_ms_per_request={
            "gunicorn": app_cpu * per_request,
            "postgres": db_cpu * per_request,
            "client": result.client_cpu * per_request,
            "other": max(busy - app_cpu - db_cpu - result.client_cpu, 0.0) * per_request,
        },
        machine_busy_pct=100 * busy / (wall * (os.cpu_count() or 1)),
        cpu_bound_ceiling=(os.cpu_count() or 1)
        * requests
        / max(app_cpu + db_cpu + result.client_cpu, 1e-9),
        memory_kib={
            "workers_rss": sum(m.get("VmRSS", 0) for m in memory),
            "workers_peak_rss": sum(m.get("VmHWM", 0) for m in memory),
            "workers_pss": sum(m.get("Pss", 0) for m in memory),
            "master_rss": master.get("VmRSS", 0),
            "workers": len(memory),
        },
        error_samples=result.error_samples,
    )
    return report, result


def print_phase(report: PhaseReport) -> None:
    latency = report.latency_ms
    cpu = report.cpu_ms_per_request
    memory = report.memory_kib
    print(
        f"\n{report.name}: {report.requests} requests in {report.elapsed:.1f}s = "
        f"{report.throughput:.1f}/s ({report.ok_throughput:.1f}/s 2xx)\n"
        f"  latency ms  p50 {latency['p50']:.1f}  p95 {latency['p95']:.1f}  "
        f"p99 {latency['p99']:.1f}  max {latency['max']:.1f}\n"
        f"  statuses    {report.statuses}  (client retries {report.retries})\n"
        f"  CPU ms/req  gunicorn {cpu['gunicorn']:.2f}  postgres {cpu['postgres']:.2f}  "
        f"client {cpu['client']:.2f}  other {cpu['other']:.2f}  "
        f"(machine {report.machine_busy_pct:.0f}% busy)\n"
        f"  ceiling     {report.cpu_bound_ceiling:.0f}/s if gunicorn, PostgreSQL backends and "
        f"client had all {os.cpu_count()} cores\n"
        f"  memory      {memory['workers']} workers RSS {memory['workers_rss'] / 1024:.1f} MiB "
        f"(peak {memory['workers_peak_rss'] / 1024:.1f}, PSS {memory['workers_pss'] / 1024:.1f}), "
        f"master {memory['master_rss'] / 1024:.1f} MiB"
    )
    for sample in report.error_samples:
        print(f"  error       {sample}")


def print_inprocess(report: InProcessReport) -> None:
    print("\nStatements per call (CaptureQueriesContext; each one is a round trip):")
    print(f"  {'':34s} {'SQL':>4s} {'SAVEPOINT':>9s} {'BEGIN':>5s} {'COMMIT':>6s} {'health':>6s}")
    for label, kinds in report.queries.items():
        print(
            f"  {label:34s} {kinds.get('SQL', 0):4d} {kinds.get('SAVEPOINT', 0):9d} "
            f"{kinds.get('BEGIN', 0):5d} {kinds.get('COMMIT', 0):6d} "
            f"{kinds.get('health check', 0):6d}   = {kinds['round trips']} round trips"
        )
    if report.timings:
        print("\nIn-process time per call (DB = cursor executes + commits + health checks):")
    for label, timing in report.timings.items():
        print(
            f"  {label:34s} wall {timing['wall_ms']:.2f} ms = DB {timing['db_ms']:.2f} "
            f"(of which COMMIT {timing['commit_ms']:.2f}) + Python {timing['python_ms']:.2f}   "
            f"(process CPU {timing['process_cpu_ms']:.2f} ms, "
            f"n={timing['iterations']:.0f})"
        )
    if report.profile_areas:
        print(
            f"\ncProfile of {report.profile_label}: own time per area, ms per call "
            "(inflated by the profiler):"
        )
        for area, ms in report.profile_areas[:20]:
            print(f"  {ms:7.3f}  {area}")
        print(report.profile_text)


def machine_description(database_url: str) -> dict[str, str]:
    cpu_model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    import django
    import gunicorn

    return {
        "cpus": f"{os.cpu_count()} ({cpu_model})",
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "postgres": postgres_version(database_url),
    }


# --------------------------------------------------------------------------------------
# Main


def http_phases(
    args: argparse.Namespace, env: dict[str, str], seeded: Seeded, log_dir: Path
) -> tuple[list[PhaseReport], int]:
    """Start gunicorn, run the phases, stop it. Return the reports and orders acknowledged."""
    from django.db import connections

    database = _database_name(args.database_url)
    connections.close_all()
    server = Gunicorn(args, env, log_dir / "gunicorn.log")
    reports: list[PhaseReport] = []
    acknowledged = 0
    skus = seeded.skus[: args.hot_products] if args.hot_products else seeded.skus
    try:
        server.wait_ready()
        print(
            f"\ngunicorn {args.worker_class} x{args.workers}"
            f"{f' ({args.threads} threads)' if args.worker_class == 'gthread' else ''} on "
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
        )
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            pool.submit(time.sleep, 0).result()  # start the client process before timing
            created: list[tuple[str, str]] = []
            if args.warmup > 0:
                warm = pool.submit(run_load, base).result()
                created.extend(warm.created)
                acknowledged += warm.statuses.get("201", 0)
                pool.submit(
                    run_load, _replace(base, kind="products", duration=min(args.warmup, 1.0))
                ).result()
            checkout = _replace(
                base, duration=args.duration, max_requests=args.requests, seed=args.seed + 1
            )
            report, result = run_phase("POST /api/v1/orders/", checkout, server, database, pool)
            acknowledged += result.statuses.get("201", 0)
            created.extend(result.created)
            reports.append(report)
            print_phase(report)
            if args.read_duration > 0:
                reads = _replace(
                    checkout, duration=args.read_duration, seed=args.seed + 2, orders=created
                )
                for name, kind in (
                    ("GET /api/v1/products/", "products"),
                    ("GET /api/v1/orders/{id}/", "order"),
                ):
                    if kind == "order" and not created:
                        continue
                    report, _ = run_phase(name, _replace(reads, kind=kind), server, database, pool)
                    reports.append(report)
                    print_phase(report)
    finally:
        server.stop()
    return reports, acknowledged


def _replace(spec: LoadSpec, **changes: Any) -> LoadSpec:
    values = {**spec.__dict__, **changes}
    return LoadSpec(**values)


def git(*arguments: str) -> str:
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["git", *arguments],  # noqa: S607 - git from PATH, as a developer runs it
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def source_export(ref: str, target: Path) -> str:
    """Extract the commit's tree into target (read-only for the repository). Return its id."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    archive = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["git", "archive", "--format=tar", commit],  # noqa: S607
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return commit


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
    env = django_environment(args)
    started = time.perf_counter()
    print(f"Benchmarking {args.source}")
    print(f"Recreating {_database_name(args.database_url)} and migrating ...", flush=True)
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
            f"({args.hot_products or 'all'} ordered from), {args.users} users "
            f"in {time.perf_counter() - started:.1f}s"
        )
        inprocess = inprocess_analysis(args, seeded)
        print_inprocess(inprocess)
        reports: list[PhaseReport] = []
        acknowledged = 0
        if not args.no_http:
            busy_before = machine_busy_seconds()
            time.sleep(2)
            background = 100 * (machine_busy_seconds() - busy_before) / (2 * (os.cpu_count() or 1))
            print(f"\nBackground load before the HTTP phases: {background:.0f}% of all cores")
            machine["background_load"] = f"{background:.0f}%"
            reports, acknowledged = http_phases(args, env, seeded, scratch)
        correctness = correctness_check(inprocess.orders_created + acknowledged)
        verdict = "OK" if correctness.ok else "FAILED: " + "; ".join(correctness.problems)
        print(
            f"\nCorrectness ({correctness.orders} orders, {correctness.stock_items} stock items): "
            f"{verdict}"
        )
        exit_code = 0 if correctness.ok else 1
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                        "machine": machine,
                        "inprocess": inprocess.__dict__ | {"profile_text": None},
                        "phases": [report.__dict__ for report in reports],
                        "correctness": correctness.problems,
                    },
                    indent=2,
                )
            )
        connections.close_all()
    finally:
        if args.drop:
            database_drop(args.database_url)
            print(f"Dropped {_database_name(args.database_url)}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
