"""The database floor: pgbench replays the statements real oms checkouts sent.

Capture: `--floor-variants` checkouts go through the WSGI app in this process (the same
request path gunicorn runs, 1 to --max-lines random lines from the same SKU pool as the
load, so --hot-products 1 gives the hot-row floor) while CaptureQueriesContext records
every statement with its literal values, BEGIN/COMMIT and savepoints included, plus the
connection health check (`SELECT 1`) when the reused connection sent one (core.db.backend
sends none while the connection's socket has nothing unread).

Parameterise: every value that must be new per transaction (the order's id and number,
its events' ids, which also name its outbox rows, and the Idempotency-Key) is replaced,
wherever it appears, by pgbench variables drawn at random per transaction: inside the
jsonb document of the single-statement checkout (`SELECT oms_checkout_write(...)`,
flows.checkout_sql) too, which finds its order's line ids itself. For a checkout on the
general path, the order line ids the app reads back with RETURNING are looked up by the
order's id in the one statement that uses them (the reservation), an index probe the app
does not pay.

A paid checkout (--payment) also writes rows with bigint keys that later statements name
by value (the idempotency key row, the status changes, the payment and its authorize
operation): each such INSERT gets an explicit random id and every later use of the
captured id becomes that variable (_RowKeys), and the PaymentIntent id (unique) a random
text. The outbox rows the request dispatches after its commit are named by their dedup
key instead of their id. The provider's HTTP call is not a statement: the floor holds
the payment's three transactions, not the wait for the provider.

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

from benchmarks.payload import PAYMENT_METHOD, checkout_body, payment_authorized, random_lines
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

    def bigint(self) -> str:
        """A random bigint primary key: one in 8e12, so a run's rows do not collide."""
        name = f"oms_id{self._count}"
        self._count += 1
        self.declarations.append(f"\\set {name} random(1000000000000, 8999999999999)")
        return f":{name}"

    def apply(self, sql: str) -> str:
        for old, new in self.replacements:
            sql = sql.replace(old, new)
        return sql


def _split_top_level(text: str) -> list[str]:
    """Split a column or VALUES list at the commas outside quotes and parentheses."""
    parts, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(text):
        if char == "'":
            quoted = not quoted  # '' inside a literal toggles twice
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    return parts


def _closing(text: str, opening: int) -> int:
    """The index of the parenthesis that closes the one at `opening`."""
    depth, quoted = 0, False
    for index in range(opening, len(text)):
        char = text[index]
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError("unbalanced parentheses")


class _RowKeys:
    """Bigint primary keys of rows a checkout inserts (`INSERT INTO "t" (...) VALUES
    (...) RETURNING id`) and then names by value: the idempotency key, the payment and its
    operation, the status changes. Each insert gets an explicit random id, and every later
    use of the captured id (`"t"."id" = N`, a foreign key column or VALUES entry, a JSON
    field, an outbox dedup key) becomes that variable, so that pgbench's transactions
    neither collide on unique keys nor all lock the captured row."""

    def __init__(self, identities: _Identities) -> None:
        self.identities = identities
        # table -> ids in insertion order; id -> variable
        self.ids: dict[str, list[int]] = {}
        self.variables: dict[tuple[str, int], str] = {}
        self.foreign_keys: dict[str, str] = {}  # column -> table
        self.inserted: dict[str, int] = {}

    def add(self, table: str, ids: list[int], *, foreign_key: str = "") -> None:
        self.ids[table] = sorted(ids)
        for row_id in self.ids[table]:
            self.variables[table, row_id] = self.identities.bigint()
        if foreign_key:
            self.foreign_keys[foreign_key] = table

    def apply(self, sql: str) -> str:
        sql = self._insert(sql)
        for (table, row_id), variable in self.variables.items():
            sql = re.sub(rf'"{table}"\."id" = {row_id}\b', f'"{table}"."id" = {variable}', sql)
        for column, table in self.foreign_keys.items():
            for row_id in self.ids[table]:
                variable = self.variables[table, row_id]
                sql = re.sub(rf'"{column}" = {row_id}\b', f'"{column}" = {variable}', sql)
                # JSON documents, plain and inside an escaped array literal.
                sql = re.sub(rf'(\\*"{column}\\*": ){row_id}\b', rf"\g<1>{variable}", sql)
        for row_id in self.ids.get("orders_orderstatuschange", []):
            variable = self.variables["orders_orderstatuschange", row_id]
            sql = re.sub(rf"order-status-change-{row_id}\b", f"order-status-change-{variable}", sql)
            sql = re.sub(rf'(\\*"status_change_id\\*": ){row_id}\b', rf"\g<1>{variable}", sql)
        return sql

    def _insert(self, sql: str) -> str:
        match = re.match(r'INSERT INTO "(\w+)" \(', sql)
        if match is None or match.group(1) not in self.ids or " VALUES (" not in sql:
            return sql
        table = match.group(1)
        columns_open = match.end() - 1
        columns_close = _closing(sql, columns_open)
        columns = _split_top_level(sql[columns_open + 1 : columns_close])
        values_open = sql.index(" VALUES (", columns_close) + len(" VALUES ")
        values_close = _closing(sql, values_open)
        values = _split_top_level(sql[values_open + 1 : values_close])
        for index, column in enumerate(columns):
            table_of = self.foreign_keys.get(column.strip('"'))
            if (
                table_of
                and values[index].isdigit()
                and (table_of, int(values[index])) in self.variables
            ):
                values[index] = self.variables[table_of, int(values[index])]
        if '"id"' not in columns:
            number = self.inserted.get(table, 0)
            self.inserted[table] = number + 1
            if number < len(self.ids[table]):
                columns.insert(0, '"id"')
                values.insert(0, self.variables[table, self.ids[table][number]])
        return (
            f"{sql[: columns_open + 1]}{', '.join(columns)}{sql[columns_close : values_open + 1]}"
            f"{', '.join(values)}{sql[values_close:]}"
        )


_OUTBOX_IDS = re.compile(r'"core_outboxmessage"\."id" (= (\d+)\b|IN \(([\d, ]+)\))')


def _outbox_by_dedup_key(sql: str) -> str:
    """An outbox row the request names by id after its commit is named by its dedup key
    (unique, indexed): the row pgbench's transaction wrote, not the captured one."""
    from core.models import OutboxMessage

    def lookup(match: re.Match[str]) -> str:
        ids = [int(match.group(2))] if match.group(2) else _ints(match.group(3))
        keys = dict(OutboxMessage.objects.filter(pk__in=ids).values_list("pk", "dedup_key"))
        quoted = ", ".join("'" + keys[row_id].replace("'", "''") + "'" for row_id in ids)
        return (
            f'"core_outboxmessage"."id" IN (SELECT id FROM core_outboxmessage '  # noqa: S608 - pgbench script text
            f"WHERE dedup_key IN ({quoted}))"
        )

    return _OUTBOX_IDS.sub(lookup, sql)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _script(
    statements: list[str],
    order_id: uuid.UUID,
    identities: _Identities,
    row_keys: "_RowKeys | None" = None,
    health_checks: int = 1,
) -> str:
    # The health check(s) the reused connection sent before the request's statements.
    lines = [*identities.declarations, *["SELECT 1;"] * health_checks]
    for sql in statements:
        sql = sql.strip().rstrip(";")
        if "INSERT INTO inventory_reservation" in sql:
            arrays = _ARRAY_LITERAL.findall(sql)
            # The second array is the order line ids (see inventory.services._RESERVE_SQL).
            line_ids = _LINE_IDS_SQL.format(order_id=order_id.hex)
            if len(arrays) > 1:
                head, tail = sql.split(arrays[1], 1)
                sql = head + line_ids + tail
        if row_keys is not None:
            sql = row_keys.apply(_outbox_by_dedup_key(sql))
        lines.append(identities.apply(sql) + ";")
    return "\n".join(lines) + "\n"


def _row_keys(order: Any, user_id: int, key: str, identities: _Identities) -> _RowKeys:
    """The bigint keys (and payment intent ids) one captured checkout wrote."""
    from core.models import IdempotencyKey
    from orders.models import OrderStatusChange
    from payments.models import Payment, PaymentOperation

    row_keys = _RowKeys(identities)
    row_keys.add(
        "core_idempotencykey",
        list(IdempotencyKey.objects.filter(user_id=user_id, key=key).values_list("pk", flat=True)),
    )
    row_keys.add(
        "orders_orderstatuschange",
        list(OrderStatusChange.objects.filter(order=order).values_list("pk", flat=True)),
    )
    payments = list(Payment.objects.filter(order=order))
    row_keys.add("payments_payment", [p.pk for p in payments], foreign_key="payment_id")
    row_keys.add(
        "payments_paymentoperation",
        list(PaymentOperation.objects.filter(payment__order=order).values_list("pk", flat=True)),
    )
    for payment in payments:
        if payment.provider_payment_id:  # unique: the intent id
            identities.text(payment.provider_payment_id, "pi_pgb")
    return row_keys


def floor_scripts(args: argparse.Namespace, seeded: Any, scratch: Path) -> tuple[list[Path], float]:
    """Capture --floor-variants real checkouts; write one pgbench script for each."""
    import logging
    import random

    from benchmarks.wsgi_client import InProcessClient
    from orders.models import Order, OrderEvent

    logging.getLogger("stripe").setLevel(logging.WARNING)  # a line per request otherwise
    rng = random.Random(args.seed + 11)  # noqa: S311 - test data, not secrets
    pool = seeded.skus[: args.hot_products] if args.hot_products else seeded.skus
    client = InProcessClient()
    token = seeded.tokens[0]
    token_user = seeded.user_ids[0]
    email = "floor@example.com"
    scripts: list[Path] = []
    counts: list[int] = []
    for variant in range(args.floor_variants):
        key = uuid.uuid4().hex
        body = checkout_body(
            random_lines(rng, pool, args.max_lines),
            email,
            PAYMENT_METHOD if args.payment else "",
        )
        outcome: dict[str, Any] = {}

        def post(
            body: dict[str, Any] = body, key: str = key, out: dict[str, Any] = outcome
        ) -> None:
            out["status"], out["body"] = client.request(
                "POST", "/api/v1/orders/", token=token, key=key, body=body
            )

        statements, kinds = capture(post)
        if outcome["status"] != 201 or (args.payment and not payment_authorized(outcome["body"])):
            raise RuntimeError(f"floor capture checkout failed: {outcome}")
        order = Order.objects.get(pk=outcome["body"]["id"])
        identities = _Identities()
        identities.uuid(order.pk)
        identities.text(order.number, "PGB-")
        identities.text(key, "pgb-")
        # An outbox row's dedup key quotes its event's id: replaced with it.
        for event_id in OrderEvent.objects.filter(order=order).values_list("id", flat=True):
            identities.uuid(event_id)
        row_keys = _row_keys(order, token_user, key, identities)
        script = scratch / f"floor-{variant:02d}.sql"
        health_checks = kinds.get("health check", 0)
        script.write_text(_script(statements, order.pk, identities, row_keys, health_checks))
        scripts.append(script)
        counts.append(len(statements) + health_checks)
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
