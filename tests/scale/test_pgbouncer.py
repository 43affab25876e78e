"""The API through PgBouncer in transaction mode (DATABASE_POOLER=pgbouncer): checkouts
and reads from many clients over a pool of two server connections, and the event
listener connected past the pooler (DATABASE_DIRECT_URL)."""

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.scale.clusters import Cluster, PgBouncer
from tests.scale.seed import ADDRESS, SKU
from tests.support.asgi_server import AsgiServer

SERVER_POOL_SIZE = 2


@pytest.fixture(scope="module")
def pgbouncer(cluster: Cluster, seeded: dict[str, Any]) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(cluster.primary, "oms", pool_size=SERVER_POOL_SIZE).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="module")
def server(
    cluster: Cluster, pgbouncer: PgBouncer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AsgiServer]:
    server = AsgiServer(
        workdir=Path(tmp_path_factory.mktemp("pgbouncer-server")),
        env={
            "DATABASE_URL": pgbouncer.url(),
            "DATABASE_POOLER": "pgbouncer",
            # Pool of 10 per process: more clients than PgBouncer has server connections.
            "DATABASE_POOL": "1",
            "DATABASE_DIRECT_URL": cluster.primary.url("oms"),
            # Only a NOTIFY can wake a long poll within the test's wait.
            "ORDER_EVENT_POLL_SECONDS": "30",
        },
    ).start()
    try:
        yield server
    finally:
        server.stop()


def _checkout(server: AsgiServer, key: str) -> tuple[int, Any]:
    return server.post(
        "/api/v1/orders/",
        {
            "email": "alice@example.com",
            "shipping_address": ADDRESS,
            "lines": [{"sku": SKU, "quantity": 1}],
        },
        key=key,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )


def test_checkouts_and_reads_work_through_pgbouncer_in_transaction_mode(seeded, pgbouncer, server):
    (config,) = [row for row in pgbouncer.show("CONFIG") if row["key"] == "pool_mode"]
    assert config["value"] == "transaction"

    def checkout_and_read(_: int) -> tuple[int, int, int]:
        status, order = _checkout(server, seeded["alice"])
        detail_status, _detail = server.get(f"/api/v1/orders/{order['id']}/", key=seeded["alice"])
        list_status, _page = server.get("/api/v1/orders/?limit=5", key=seeded["alice"])
        return status, detail_status, list_status

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(checkout_and_read, range(24)))

    assert results == [(201, 200, 200)] * 24
    (pool_row,) = [row for row in pgbouncer.show("POOLS") if row["database"] == "oms"]
    # Every statement went through PgBouncer's two server connections.
    assert (
        int(pool_row["sv_active"]) + int(pool_row["sv_idle"]) + int(pool_row["sv_used"])
        <= SERVER_POOL_SIZE
    )
    (stats,) = [row for row in pgbouncer.show("STATS") if row["database"] == "oms"]
    assert int(stats["total_xact_count"]) >= 24 * 3


def test_a_long_poll_is_woken_through_the_direct_connection(seeded, server):
    status, page = server.get("/api/v1/events/?limit=500", key=seeded["service"])
    assert status == 200
    cursor = page["next_cursor"]
    answer: dict[str, Any] = {}

    def wait() -> None:
        answer["at"] = time.monotonic()
        answer["result"] = server.get(
            f"/api/v1/events/?after={cursor}&wait=20", key=seeded["service"], timeout=40
        )
        answer["took"] = time.monotonic() - answer["at"]

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.0)
    status, order = _checkout(server, seeded["alice"])
    assert status == 201
    waiter.join(timeout=40)

    status, page = answer["result"]
    assert status == 200
    assert order["id"] in [event["order_id"] for event in page["events"]]
    # Woken by NOTIFY, not by the 30-second poll.
    assert answer["took"] < 10
