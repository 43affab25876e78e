"""The database floor: pgbench replays the statements real oms checkouts sent.

Capture: `--floor-variants` checkouts go through the WSGI app in this process (the same
request path gunicorn runs, 1 to --max-lines random lines from the same SKU pool as the
load, so --hot-products 1 gives the hot-row floor) while CaptureQueriesContext records
every statement with its literal values, BEGIN/COMMIT and savepoints included, plus the
connection health check (`SELECT 1`) a reused connection sends first.

Parameterise: every value that must be new per transaction (the order's id and number,
its events' ids, which also name its outbox rows, and the Idempotency-Key) is replaced,
wherever it appears, by pgbench variables drawn at random per transaction: inside the
jsonb document of the single-statement checkout (`SELECT oms_checkout_write(...)`,
flows.checkout_sql) too, which finds its order's line ids itself. For a checkout on the
general path, the order line ids the app reads back with RETURNING are looked up by the
order's id in the one statement that uses them (the reservation), an index probe the app
does not pay.

Replay: one pgbench script per captured checkout (equal weights), simple query protocol
as Django's psycopg cursor sends, --floor-clients connections for --floor-duration
seconds, against the benchmark database, after the HTTP phases and the correctness check
(pgbench's orders pair lines with stock by id order, not as the app plans them).
"""

import argparse
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.payload import SHIPPING_ADDRESS, random_lines
from benchmarks.statements import capture

_LINE_IDS_SQL = (
    "(SELECT array_agg(id ORDER BY id) FROM orders_orderline WHERE order_id = '{order_id}'::uuid)"
)
_ARRAY_LITERAL = re.compile(r"'\{[0-9,]*\}'(?:::\w+\[\])?")


@dataclass
class FloorReport:
    variants: int
    statements_per_transaction: float
    clients: int
    duration: float
    tps: float = 0.0
    latency_ms: float = 0.0
    failed: int = 0
    transactions: int = 0
    script_sample: str = ""
    error: str = ""


def pgbench_path() -> str | None:
    """pgbench on PATH or in Debian's PostgreSQL directories; installed from Debian's
    postgresql-client when missing (root only)."""
    found = shutil.which("pgbench") or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None
    )
    if found or not shutil.which("apt-get"):
        return found
    print("pgbench not found: installing postgresql-client with apt-get ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "postgresql-client"], check=False)  # noqa: S607
    return shutil.which("pgbench")


class _Identities:
    """Replace per-transaction values by pgbench variables, consistently everywhere."""

    def __init__(self) -> None:
        self.declarations: list[str] = []
        self.replacements: list[tuple[str, str]] = []
        self._count = 0

    def _pair(self) -> tuple[str, str]:
        name = f"oms_id{self._count}"
        self._count += 1
        # Exactly 4 + 12 decimal digits, so a uuid keeps its 32 hex digits.
        self.declarations += [
            f"\\set {name}a random(1000, 9999)",
            f"\\set {name}b random(100000000000, 999999999999)",
        ]
        return f":{name}a", f":{name}b"

    def uuid(self, value: uuid.UUID) -> None:
        a, b = self._pair()
        plain, dashed = value.hex, str(value)
        self.replacements.append((plain, plain[:16] + a + b))
        self.replacements.append((dashed, f"{dashed[:19]}{a}-{b}"))

    def text(self, value: str, prefix: str) -> None:
        a, b = self._pair()
        self.replacements.append((value, f"{prefix}{a}-{b}"))

    def apply(self, sql: str) -> str:
        for old, new in self.replacements:
            sql = sql.replace(old, new)
        return sql


def _script(statements: list[str], order_id: uuid.UUID, identities: _Identities) -> str:
    lines = [*identities.declarations, "SELECT 1;"]  # the health check on a reused connection
    for sql in statements:
        sql = sql.strip().rstrip(";")
        if "INSERT INTO inventory_reservation" in sql:
            arrays = _ARRAY_LITERAL.findall(sql)
            # The second array is the order line ids (see inventory.services._RESERVE_SQL).
            line_ids = _LINE_IDS_SQL.format(order_id=order_id.hex)
            if len(arrays) > 1:
                head, tail = sql.split(arrays[1], 1)
                sql = head + line_ids + tail
        lines.append(identities.apply(sql) + ";")
    return "\n".join(lines) + "\n"


def floor_scripts(args: argparse.Namespace, seeded: Any, scratch: Path) -> tuple[list[Path], float]:
    """Capture --floor-variants real checkouts; write one pgbench script for each."""
    import random

    from benchmarks.wsgi_client import InProcessClient
    from orders.models import Order, OrderEvent

    rng = random.Random(args.seed + 11)  # noqa: S311 - test data, not secrets
    pool = seeded.skus[: args.hot_products] if args.hot_products else seeded.skus
    client = InProcessClient()
    token = seeded.tokens[0]
    email = "floor@example.com"
    scripts: list[Path] = []
    counts: list[int] = []
    for variant in range(args.floor_variants):
        key = uuid.uuid4().hex
        body = {
            "lines": random_lines(rng, pool, args.max_lines),
            "email": email,
            "shipping_address": SHIPPING_ADDRESS,
        }
        outcome: dict[str, Any] = {}

        def post(
            body: dict[str, Any] = body, key: str = key, out: dict[str, Any] = outcome
        ) -> None:
            out["status"], out["body"] = client.request(
                "POST", "/api/v1/orders/", token=token, key=key, body=body
            )

        statements, _kinds = capture(post)
        if outcome["status"] != 201:
            raise RuntimeError(f"floor capture checkout failed: {outcome}")
        order = Order.objects.get(pk=outcome["body"]["id"])
        identities = _Identities()
        identities.uuid(order.pk)
        identities.text(order.number, "PGB-")
        identities.text(key, "pgb-")
        # An outbox row's dedup key quotes its event's id: replaced with it.
        for event_id in OrderEvent.objects.filter(order=order).values_list("id", flat=True):
            identities.uuid(event_id)
        script = scratch / f"floor-{variant:02d}.sql"
        script.write_text(_script(statements, order.pk, identities))
        scripts.append(script)
        counts.append(len(statements) + 1)
    return scripts, sum(counts) / max(len(counts), 1)


def run_floor(args: argparse.Namespace, seeded: Any, scratch: Path) -> FloorReport:
    """Capture, then run pgbench on the benchmark database. Django must be set up."""
    from django.db import connections

    scripts, per_transaction = floor_scripts(args, seeded, scratch)
    connections.close_all()
    report = FloorReport(
        variants=len(scripts),
        statements_per_transaction=per_transaction,
        clients=args.floor_clients or args.workers * args.threads,
        duration=args.floor_duration if args.floor_duration is not None else args.duration,
        script_sample=scripts[0].read_text() if scripts else "",
    )
    pgbench = pgbench_path()
    if pgbench is None:
        report.error = "pgbench is not installed (Debian: apt-get install postgresql-client)"
        return report
    url = urlsplit(args.database_url)
    command = [
        pgbench,
        "--no-vacuum",
        "--protocol=simple",
        f"--client={report.clients}",
        "--jobs=1",
        f"--time={max(int(round(report.duration)), 1)}",
        f"--host={url.hostname or '127.0.0.1'}",
        f"--port={url.port or 5432}",
        f"--username={url.username or 'postgres'}",
        *[f"--file={script}@1" for script in scripts],
        url.path.lstrip("/"),
    ]
    env = {"PGPASSWORD": url.password} if url.password else {}
    result = subprocess.run(  # noqa: S603 - our own command line
        command, capture_output=True, text=True, env={**os.environ, **env}, check=False
    )
    output = result.stdout + result.stderr
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    latency = re.search(r"latency average = ([0-9.]+) ms", output)
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    if result.returncode != 0 or tps is None:
        report.error = f"pgbench exited {result.returncode}: {output[-2000:]}"
        return report
    report.tps = float(tps.group(1))
    report.latency_ms = float(latency.group(1)) if latency else 0.0
    report.transactions = int(processed.group(1)) if processed else 0
    report.failed = int(failed.group(1)) if failed else 0
    return report
