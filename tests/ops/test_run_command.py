"""scripts/run as a new user runs it: SIGTERM stops everything it started (and nothing it
did not), a restart keeps a working demo (the fake Stripe server keeps its objects in
var/), and the logs of earlier runs are kept (appended to, not truncated)."""

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.run_command import (
    RunCommand,
    alive,
    drop_database,
    port_is_free,
    postgres_answers,
)

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
    command = RunCommand(tmp_path, database=f"oms_prod_run_{uuid.uuid4().hex[:8]}")
    started: set[int] = set()
    try:
        yield command
    finally:
        started |= command.descendants()
        command.kill_leftovers(started)
        drop_database(command.database)


def stop_and_assert_all_gone(command: RunCommand) -> None:
    children = command.descendants()
    assert len(children) >= 5, children  # redis, fake Stripe, warehouse, worker, uvicorn
    assert command.stop() == 143  # 128 + SIGTERM: stopped by the signal, not crashed
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in children if alive(pid)] == []
    assert [port for port in command.ports if not port_is_free(port)] == []
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
    wait_for_status(run_command, keys["alice"], order["id"], "delivered")
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
