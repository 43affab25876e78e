"""Measure what docs/capacity.md builds on: WAL bytes per checkout and bytes per row of
the tables that grow with orders, on a PostgreSQL cluster of its own (fsync and
full-page writes on, nothing else writing to it), through the API under uvicorn.

    .venv/bin/python -m tests.scale.measure --orders 2000 --threads 4

Prints one JSON document. Celery runs eagerly (the test settings), so the outbox work
each checkout causes (event log, emails, marking messages done) is in the figures.
"""

import argparse
import contextlib
import json
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
django.setup()

from tests.scale.clusters import Cluster, manage  # noqa: E402
from tests.scale.seed import ADDRESS, SKU  # noqa: E402
from tests.support.asgi_server import AsgiServer  # noqa: E402
from tests.support.fake_stripe import running_fake_stripe  # noqa: E402

_WAL_STATS = "SELECT wal_records, wal_fpi, wal_bytes::bigint FROM pg_stat_wal"
_TABLES = """
    SELECT relname, n_live_tup, pg_relation_size(relid), pg_total_relation_size(relid)
    FROM pg_stat_user_tables WHERE n_live_tup > 0 ORDER BY pg_total_relation_size(relid) DESC
"""


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    """CPU time of a process (and of its children it has reaped), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / _TICKS


def _postgres_cpu_seconds(cluster: Cluster) -> float:
    """The primary's postmaster, what it reaped, and its running children."""
    postmaster = int((cluster.primary.datadir / "postmaster.pid").read_text().split()[0])
    total = _cpu_seconds(postmaster, with_children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == postmaster:
                total += _cpu_seconds(int(entry.name))
        except (OSError, ValueError):
            continue
    return total


def _checkout(server: AsgiServer, key: str, pay: bool) -> int:
    status, _ = server.post(
        "/api/v1/orders/",
        {
            "email": "alice@example.com",
            "shipping_address": ADDRESS,
            "lines": [{"sku": SKU, "quantity": 1}],
            **({"payment_method": "pm_card_visa"} if pay else {}),
        },
        key=key,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--requests-only",
        action="store_true",
        help="leave the outbox work undone (no eager Celery, no worker): the request's own cost",
    )
    parser.add_argument(
        "--pay", action="store_true", help="checkouts with a card (fake Stripe): confirmed orders"
    )
    args = parser.parse_args()

    cluster = Cluster(durable=True).start(with_replica=False)
    server = None
    stack = contextlib.ExitStack()
    try:
        cluster.primary.sql("CREATE DATABASE oms")
        url = cluster.primary.url("oms")
        manage(url, "migrate", "--no-input", "-v", "0")
        keys = json.loads(
            manage(url, "shell", "-c", "from tests.scale.seed import main; main()")
            .strip()
            .splitlines()[-1]
        )
        env = {
            "DATABASE_URL": url,
            "LOG_LEVEL": "WARNING",
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        }
        if args.requests_only:
            env |= {"CELERY_TASK_ALWAYS_EAGER": "0", "CELERY_BROKER_URL": "memory://"}
        if args.pay:
            stripe_server = stack.enter_context(running_fake_stripe())
            env |= {"STRIPE_API_BASE": stripe_server.url, "STRIPE_API_KEY": stripe_server.api_key}
        server = AsgiServer(workdir=Path(tempfile.mkdtemp(prefix="oms-measure-")), env=env).start()
        for _ in range(50):  # warm up
            _checkout(server, keys["alice"], args.pay)
        cluster.primary.sql("CHECKPOINT")
        before = cluster.primary.sql(_WAL_STATS)[0]
        assert server.process is not None
        server_cpu = _cpu_seconds(server.process.pid)
        postgres_cpu = _postgres_cpu_seconds(cluster)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            statuses = list(
                pool.map(lambda _: _checkout(server, keys["alice"], args.pay), range(args.orders))
            )
        elapsed = time.monotonic() - started
        server_cpu = _cpu_seconds(server.process.pid) - server_cpu
        postgres_cpu = _postgres_cpu_seconds(cluster) - postgres_cpu
        after = cluster.primary.sql(_WAL_STATS)[0]
        records, fpi, wal_bytes = (a - b for a, b in zip(after, before, strict=True))
        cluster.primary.sql("VACUUM ANALYZE", database="oms")
        orders = cluster.primary.sql("SELECT count(*) FROM orders_order", database="oms")[0][0]
        tables = [
            {
                "table": name,
                "rows": rows,
                "rows_per_order": round(rows / orders, 2),
                "heap_bytes_per_row": round(heap / rows),
                "total_bytes_per_row": round(total / rows),
            }
            for name, rows, heap, total in cluster.primary.sql(_TABLES, database="oms")
        ]
        print(
            json.dumps(
                {
                    "orders_measured": args.orders,
                    "paid": args.pay,
                    "outbox_work_included": not args.requests_only,
                    "non_201": sum(1 for status in statuses if status != 201),
                    "seconds": round(elapsed, 1),
                    "server_cpu_ms_per_checkout": round(1000 * server_cpu / args.orders, 2),
                    "postgres_cpu_ms_per_checkout": round(1000 * postgres_cpu / args.orders, 2),
                    "wal_bytes_per_checkout": round(wal_bytes / args.orders),
                    "wal_records_per_checkout": round(records / args.orders, 1),
                    "full_page_images_per_checkout": round(fpi / args.orders, 2),
                    "orders_in_database": orders,
                    "tables": tables,
                },
                indent=2,
            )
        )
    finally:
        if server is not None:
            server.stop()
        stack.close()
        cluster.stop()


if __name__ == "__main__":
    main()
