"""scripts/run as a new user runs it: SIGTERM stops everything it started (and nothing it
did not), a restart keeps a working demo (the fake Stripe server keeps its objects in
var/), and the logs of earlier runs are kept (appended to, not truncated)."""

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer
from tests.support.run_command import (
    RunCommand,
    alive,
    drop_database,
    port_is_free,
    postgres_answers,
)

pytest_plugins = ("tests.support.redis_server",)

ADDRESS = {
    "name": "Alice",
    "line1": "1 Main St",
    "line2": "",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


@pytest.fixture
def run_command(tmp_path) -> Iterator[RunCommand]:
    # No broker URL: scripts/run finds no Redis on its free port and starts its own.
    command = RunCommand(tmp_path, database=f"oms_prod_run_{uuid.uuid4().hex[:8]}")
    started: set[int] = set()
    try:
        yield command
    finally:
        started |= command.descendants()
        command.kill_leftovers(started)
        drop_database(command.database)


def stop_and_assert_all_gone(command: RunCommand, *, own_redis: bool = True) -> None:
    children = command.descendants()
    # fake Stripe, fake warehouse, worker, uvicorn (and the redis-server it started)
    assert len(children) >= 4 + own_redis, children
    assert command.stop() == 143  # 128 + SIGTERM: stopped by the signal, not crashed
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in children if alive(pid)] == []
    ports = command.ports if own_redis else command.ports[:-1]
    assert [port for port in ports if not port_is_free(port)] == []
    # The PostgreSQL it found answering is not its own: it is left running.
    assert postgres_answers()


def wait_for_status(command: RunCommand, key: str, order_id: str, status: str) -> dict:
    deadline = time.monotonic() + 60
    order: dict = {}
    while time.monotonic() < deadline:
        _, order = command.api("GET", f"orders/{order_id}/", key)
        if order["status"] == status:
            return order
        time.sleep(0.5)
    raise AssertionError(f"order {order_id} is {order.get('status')}, never {status}")


def test_sigterm_stops_every_child_and_a_restart_keeps_a_working_demo(run_command):
    # Given scripts/run serving the demo, and an order paid with the fake provider
    run_command.start()
    keys = run_command.demo_keys()
    assert set(keys) == {"alice", "staff", "storefront"}
    status, order = run_command.api(
        "POST",
        "orders/",
        keys["alice"],
        {
            "lines": [{"sku": "MUG-LOGO", "quantity": 1}],
            "email": "alice@example.com",
            "shipping_address": ADDRESS,
            "payment_method": "pm_card_visa",
        },
        idempotency_key=str(uuid.uuid4()),
    )
    assert status == 201, order
    assert order["payment"]["status"] == "authorized"
    # ... delivered by the fake warehouse, so the payment is captured at the provider
    delivered = wait_for_status(run_command, keys["alice"], order["id"], "delivered")
    assert delivered["payment"]["status"] == "captured"
    assert delivered["reservation_expires_at"] is None  # no stock is held for payment
    worker_log = run_command.var_dir / "log" / "worker.log"
    first_run_log = worker_log.read_text()
    assert first_run_log

    # When scripts/run gets SIGTERM, then every process it started is gone
    stop_and_assert_all_gone(run_command)

    # When it starts again
    run_command.start()
    # Then the worker log of the first run is still there, and the new run appends
    assert worker_log.read_text().startswith(first_run_log)
    # ... and the order placed before the restart can be refunded: its payment intent
    # and charge live on in the fake Stripe server's state under var/
    status, refunded = run_command.api(
        "POST", f"orders/{order['id']}/refund/", keys["staff"], {}, idempotency_key="refund-1"
    )
    assert status == 200, refunded
    assert (refunded["status"], refunded["payment"]["status"]) == ("refunded", "refunded")
    assert refunded["payment"]["amount_refunded"] == order["total"]
    # ... and a new order is paid as before
    status, second = run_command.api(
        "POST",
        "orders/",
        keys["alice"],
        {
            "lines": [{"sku": "MUG-LOGO", "quantity": 1}],
            "email": "alice@example.com",
            "shipping_address": ADDRESS,
            "payment_method": "pm_card_visa",
        },
        idempotency_key=str(uuid.uuid4()),
    )
    assert status == 201, second
    assert second["payment"]["status"] == "authorized"
    stop_and_assert_all_gone(run_command)


def test_sigterm_leaves_a_redis_it_found_running(tmp_path, redis_server: RedisServer):
    # Given a Redis that already answers at the broker URL
    command = RunCommand(
        tmp_path, database=f"oms_prod_run_{uuid.uuid4().hex[:8]}", broker_url=redis_server.url
    )
    started: set[int] = set()
    try:
        command.start()
        started = command.descendants()
        # When scripts/run, which used it, gets SIGTERM
        stop_and_assert_all_gone(command, own_redis=False)
        # Then that Redis still answers
        assert redis_server.client().ping()
    finally:
        command.kill_leftovers(started | command.descendants())
        drop_database(command.database)
