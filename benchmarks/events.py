"""The order event log's two figures: feed read throughput and webhook delivery latency.

    python -m benchmarks.events --events 20000 --subscriptions 1,10,100 --drop

Recreates its own database (the name must contain `bench`), seeds it as `python -m
benchmarks` does and fills the event log with --events events. Then:

1. Feed: gunicorn with uvicorn workers (as docker/start-web.sh, production settings)
   serves `GET /api/v1/events/`; --clients keep-alive clients, each with a service
   account's key, page through the whole log from the start (`after=<next_cursor>`)
   with each --limits value for --feed-duration seconds: events and requests per
   second, p50/p99 per page.
2. Webhooks: a private redis-server on a free port as the broker, a Celery worker
   (`-Q events,default`), one loopback HTTP receiver serving every subscription by
   path. For each --subscriptions count, that many subscriptions to `order.created`,
   and checkouts placed in this process at --rate per second for --delivery-duration
   seconds; latency = receipt time - the event's `occurred_at` (same clock).
"""

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.database import database_drop, database_name, database_recreate
from benchmarks.django_env import django_environment, django_setup
from benchmarks.machine import machine_description
from benchmarks.options import DEFAULT_DATABASE_URL
from benchmarks.payload import SHIPPING_ADDRESS
from benchmarks.procfs import background_load
from benchmarks.seed import Seeded, api_keys_create, seed
from benchmarks.server import Server, free_port
from benchmarks.source import REPO_ROOT
from benchmarks.stats import percentile

DATABASE_URL = DEFAULT_DATABASE_URL.replace("oms_bench", "oms_bench_events")
# Events written per transaction while filling the log (each batch its own txid).
FILL_BATCH = 1000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.events",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--database-url", default=DATABASE_URL)
    parser.add_argument("--settings", default="config.settings.production")
    parser.add_argument("--events", type=int, default=20_000, help="events in the log")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--clients", type=int, default=4, help="feed readers (threads)")
    parser.add_argument("--limits", default="100,500", help="page sizes, one phase each")
    parser.add_argument("--feed-duration", type=float, default=20.0, help="seconds per limit")
    parser.add_argument("--subscriptions", default="1,10,100", help="one delivery run each")
    parser.add_argument("--rate", type=float, default=2.0, help="checkouts per second")
    parser.add_argument("--delivery-duration", type=float, default=30.0)
    parser.add_argument("--drain", type=float, default=20.0, help="wait for late receipts")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--skip-feed", action="store_true")
    parser.add_argument("--skip-delivery", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = parser.parse_args(argv)
    if "bench" not in (urlsplit(args.database_url).path or ""):
        parser.error("the database name must contain 'bench': this script drops and recreates it")
    # What seed() and Server read.
    args.warehouses, args.products, args.stock, args.users = 3, 100, 1_000_000, 5
    args.worker_class, args.threads = "uvicorn_worker.UvicornWorker", 1
    args.app = "config.asgi:application"
    args.source_root = REPO_ROOT
    return args


def summary(label: str, values_ms: list[float]) -> str:
    values = sorted(values_ms)
    return (
        f"{label}: n={len(values)} p50 {percentile(values, 0.5):.1f} ms, "
        f"p99 {percentile(values, 0.99):.1f} ms, max {max(values, default=float('nan')):.1f} ms"
    )


# --- the log ----------------------------------------------------------------------------


def log_fill(seeded: Seeded, total: int) -> None:
    """Place 100 checkouts (real order.created events), then copy their events, in
    transactions of FILL_BATCH, up to `total` (each copy a new id, sequence and txid)."""
    from django.db import connection, transaction

    placed = checkout_placer(seeded)
    for _ in range(100):
        placed()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), max(sequence) FROM orders_orderevent")
        count, top = cursor.fetchone() or (0, 0)
    per_order = max(1, FILL_BATCH // max(count, 1))
    round_ = 0
    while count < total:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO orders_orderevent
                    (id, order_id, sequence, type, occurred_at, api_version, data, txid)
                SELECT gen_random_uuid(), e.order_id, %s + %s * %s + g, e.type,
                       e.occurred_at, e.api_version, e.data, pg_current_xact_id()::text::bigint
                FROM orders_orderevent e CROSS JOIN generate_series(1, %s) g
                WHERE e.sequence = 1
                """,
                [top, round_, per_order, per_order],
            )
            count += cursor.rowcount
        round_ += 1
    print(f"Event log: {count} events", flush=True)


def service_key() -> str:
    """An API key of a service account (staff, in the `service` group only)."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create(username="bench-service", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="service")[0])
    return api_keys_create([user])[0]


# --- feed -------------------------------------------------------------------------------


def feed_reader(
    port: int, key: str, limit: int, stop_at: float, pages_ms: list[float], counts: list[int]
) -> None:
    """Page through the feed from the start until stop_at (again from the start at the end)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {key}", "Accept": "application/json"}
    cursor = ""
    while time.monotonic() < stop_at:
        path = f"/api/v1/events/?limit={limit}" + (f"&after={cursor}" if cursor else "")
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        page = json.loads(body)
        pages_ms.append(elapsed)
        counts.append(len(page["events"]))
        cursor = "" if not page["events"] else page["next_cursor"]
    conn.close()


def feed_phase(args: argparse.Namespace, port: int, key: str, limit: int) -> None:
    warm: list[float] = []
    feed_reader(port, key, limit, time.monotonic() + 2, warm, [])
    pages_ms: list[float] = []
    counts: list[int] = []
    started = time.monotonic()
    stop_at = started + args.feed_duration
    threads = [
        threading.Thread(target=feed_reader, args=(port, key, limit, stop_at, pages_ms, counts))
        for _ in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    print(
        f"limit={limit}: {sum(counts) / elapsed:.0f} events/s, {len(counts) / elapsed:.1f} "
        f"requests/s, {summary('pages', pages_ms)}",
        flush=True,
    )


def feed_benchmark(args: argparse.Namespace, env: dict[str, str], scratch: Path) -> None:
    key = service_key()
    server = Server(args, env | {"DATABASE_POOL": "1"}, scratch / "gunicorn.log")
    try:
        server.wait_ready()
        print(
            f"\nFeed: gunicorn, {args.workers} uvicorn workers, {args.clients} clients; "
            f"background load {background_load():.0f}% of all cores",
            flush=True,
        )
        for limit in (int(value) for value in args.limits.split(",")):
            feed_phase(args, server.port, key, limit)
    finally:
        server.stop()


# --- webhooks ---------------------------------------------------------------------------


class Receipts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies_ms: dict[str, list[float]] = {}

    def record(self, path: str, body: bytes) -> None:
        received = time.time()
        occurred = datetime.fromisoformat(json.loads(body)["occurred_at"]).timestamp()
        with self.lock:
            self.latencies_ms.setdefault(path, []).append((received - occurred) * 1000)


def receiver_start(receipts: Receipts) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receipts.record(self.path, body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def checkout_placer(seeded: Seeded) -> Any:
    from django.contrib.auth.models import User

    from core.actors import Actor
    from flows.place import OrderLineRequest, order_place

    user = User.objects.get(pk=seeded.user_ids[0])
    actor = Actor(user=user, request_id="benchmark-events")
    counter = iter(range(10**9))

    def place() -> None:
        sku = seeded.skus[next(counter) % len(seeded.skus)]
        order_place(
            customer=user,
            email=user.email,
            shipping_address=dict(SHIPPING_ADDRESS),
            lines=[OrderLineRequest(sku, 1)],
            actor=actor,
        )

    return place


def delivery_run(
    args: argparse.Namespace, seeded: Seeded, receipts: Receipts, port: int, count: int
) -> None:
    from events.models import EventSubscription

    EventSubscription.objects.all().delete()
    paths = [f"/run{count}/s{i}" for i in range(count)]
    EventSubscription.objects.bulk_create(
        EventSubscription(
            name=f"bench {path}",
            url=f"http://127.0.0.1:{port}{path}",
            secret="bench-secret",  # noqa: S106 - a loopback receiver
            topics=["order.created"],
        )
        for path in paths
    )
    time.sleep(1)  # EVENTS_SUBSCRIPTION_CACHE_SECONDS is 0 in this run
    place = checkout_placer(seeded)
    load = background_load()
    interval = 1 / args.rate
    started = time.monotonic()
    placed = 0
    while (due := started + placed * interval) < started + args.delivery_duration:
        time.sleep(max(0.0, due - time.monotonic()))
        place()
        placed += 1
    expected = placed * count
    deadline = time.monotonic() + args.drain
    while time.monotonic() < deadline:
        if sum(len(receipts.latencies_ms.get(path, [])) for path in paths) >= expected:
            break
        time.sleep(0.5)
    latencies = [ms for path in paths for ms in receipts.latencies_ms.get(path, [])]
    print(
        f"{count} subscriptions, {placed} events at {args.rate}/s, background load {load:.0f}%: "
        f"{len(latencies)} of {expected} received; {summary('latency', latencies)}",
        flush=True,
    )


def delivery_benchmark(
    args: argparse.Namespace, env: dict[str, str], seeded: Seeded, scratch: Path
) -> None:
    from django.db import connections

    receipts = Receipts()
    receiver = receiver_start(receipts)
    worker = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [
            *(sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "events,default"),
            *("--concurrency", str(args.concurrency), "--loglevel", "WARNING"),
            *("--without-gossip", "--without-mingle", "--hostname", f"bench-events@{os.getpid()}"),
        ],
        cwd=args.source_root,
        env=env,
        stdout=(scratch / "celery.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        time.sleep(5)  # the worker connects and forks
        if worker.poll() is not None:
            raise RuntimeError((scratch / "celery.log").read_text()[-3000:])
        print(
            f"\nWebhooks: Celery worker (concurrency {args.concurrency}), receiver on "
            f"127.0.0.1:{receiver.server_port}, checkouts at {args.rate}/s",
            flush=True,
        )
        for count in (int(value) for value in args.subscriptions.split(",")):
            delivery_run(args, seeded, receipts, receiver.server_port, count)
            connections.close_all()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        receiver.shutdown()


# --- the run ----------------------------------------------------------------------------


def redis_start(scratch: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise SystemExit("redis-server not found")
    process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        cwd=scratch,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(0.5)
    return process, port


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="oms-bench-events-") as scratch_dir:
        scratch = Path(scratch_dir)
        redis, redis_port = redis_start(scratch)
        env = django_environment(args) | {
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "EVENTS_SUBSCRIPTION_CACHE_SECONDS": "0",
        }
        print(f"Recreating {database_name(args.database_url)} ...", flush=True)
        database_recreate(args.database_url)
        try:
            django_setup(env, args.source_root)
            from django.core.management import call_command

            call_command("migrate", verbosity=0, interactive=False)
            seeded = seed(args)
            machine = machine_description(args.database_url)
            print("Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()), flush=True)
            if not args.skip_feed:
                log_fill(seeded, args.events)
                feed_benchmark(args, env, scratch)
            if not args.skip_delivery:
                delivery_benchmark(args, env, seeded, scratch)
        finally:
            from django.db import connections

            connections.close_all()
            redis.terminate()
            redis.wait(timeout=10)
            if args.drop:
                database_drop(args.database_url)
                print(f"Dropped {database_name(args.database_url)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
