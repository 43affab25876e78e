"""Reads from a streaming replica: a real primary and replica of the test's own
(tests.scale.clusters), the API under uvicorn against both.

Where a read went is read from what it returned: with the replica's replay paused, a
row changed on the primary since shows its old value on the replica and its new value
on the primary.
"""

import re
import time
import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.scale.clusters import Cluster
from tests.scale.seed import ADDRESS, SKU
from tests.support.asgi_server import AsgiServer
from tests.support.processes import free_port

# Short, so that the test can wait past it.
MAX_LAG_SECONDS = 4


@pytest.fixture(scope="module")
def server(
    cluster: Cluster, seeded: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AsgiServer]:
    server = AsgiServer(
        workdir=Path(tmp_path_factory.mktemp("replica-server")),
        env={
            "DATABASE_URL": cluster.primary.url("oms"),
            "DATABASE_REPLICA_URL": cluster.replica.url("oms"),
            "DATABASE_REPLICA_MAX_LAG_SECONDS": str(MAX_LAG_SECONDS),
            # Read the replica's position on every request: the test pauses and resumes it.
            "DATABASE_REPLICA_STATUS_SECONDS": "0",
        },
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def replay_paused(cluster: Cluster) -> Iterator[float]:
    """Pause the replica's replay just after it replayed a fresh transaction (so its
    lag starts near zero); resume and catch up afterwards. Yields when it paused."""
    primary, replica = cluster.primary, cluster.replica
    primary.sql("CREATE TABLE IF NOT EXISTS tick (at timestamptz)")
    primary.sql("INSERT INTO tick VALUES (now())")
    cluster.wait_for_replay()
    replica.sql("SELECT pg_wal_replay_pause()")
    paused_at = time.monotonic()
    try:
        yield paused_at
    finally:
        replica.sql("SELECT pg_wal_replay_resume()")
        cluster.wait_for_replay()


def _checkout(server: AsgiServer, key: str) -> dict[str, Any]:
    status, body = server.post(
        "/api/v1/orders/",
        {
            "email": "alice@example.com",
            "shipping_address": ADDRESS,
            "lines": [{"sku": SKU, "quantity": 1}],
        },
        key=key,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert status == 201, body
    return dict(body)


def test_a_customer_sees_the_order_they_just_placed_while_the_replica_is_paused(
    cluster, seeded, server, replay_paused
):
    order = _checkout(server, seeded["alice"])

    # The replica has not got it...
    assert cluster.replica.sql(
        "SELECT count(*) FROM orders_order WHERE id = %s", order["id"], database="oms"
    ) == [(0,)]
    # ...yet its customer's next reads find it: they go to the primary.
    status, detail = server.get(f"/api/v1/orders/{order['id']}/", key=seeded["alice"])
    assert status == 200, detail
    assert detail["id"] == order["id"]
    status, page = server.get("/api/v1/orders/", key=seeded["alice"])
    assert status == 200
    assert order["id"] in [row["id"] for row in page["results"]]
    status, events = server.get(f"/api/v1/orders/{order['id']}/events/", key=seeded["alice"])
    assert status == 200
    assert [event["type"] for event in events["events"]][:1] == ["order.created"]
    # Still within the lag bound: the primary answered because alice wrote, not because
    # the replica lagged too far.
    assert time.monotonic() - replay_paused < MAX_LAG_SECONDS, "too slow to tell"


def test_other_reads_come_from_the_replica_until_it_lags_past_the_bound(
    cluster, seeded, server, replay_paused
):
    bobs_order = seeded["bobs_order"]
    # A change bob did not make (staff, a worker): written on the primary only.
    cluster.primary.sql(
        "UPDATE orders_order SET email = 'bob.new@example.com' WHERE id = %s",
        bobs_order,
        database="oms",
    )

    status, detail = server.get(f"/api/v1/orders/{bobs_order}/", key=seeded["bob"])
    assert status == 200
    assert time.monotonic() - replay_paused < MAX_LAG_SECONDS, "too slow to see the lag"
    # Within the bound bob reads the replica, which has not replayed the change.
    assert detail["email"] == "bob@example.com"

    # Past the bound every read goes to the primary.
    time.sleep(max(0.0, MAX_LAG_SECONDS + 1 - (time.monotonic() - replay_paused)))
    status, detail = server.get(f"/api/v1/orders/{bobs_order}/", key=seeded["bob"])
    assert status == 200
    assert detail["email"] == "bob.new@example.com"


def test_the_feed_page_reads_the_replica_and_a_waiting_read_the_primary(
    cluster, seeded, server, replay_paused
):
    order = _checkout(server, seeded["alice"])

    status, page = server.get("/api/v1/events/?limit=500", key=seeded["service"])
    assert status == 200
    assert order["id"] not in [event["order_id"] for event in page["events"]]
    assert time.monotonic() - replay_paused < MAX_LAG_SECONDS, "too slow to see the lag"

    # A read that waits is woken by the primary and reads it.
    status, page = server.get("/api/v1/events/?limit=500&wait=1", key=seeded["service"])
    assert status == 200
    assert order["id"] in [event["order_id"] for event in page["events"]]


def test_reads_go_to_the_replica_again_once_it_has_replayed_the_write(cluster, seeded, server):
    order = _checkout(server, seeded["alice"])
    cluster.wait_for_replay()
    cluster.replica.sql("SELECT pg_wal_replay_pause()")
    try:
        cluster.primary.sql(
            "UPDATE orders_order SET email = 'alice.new@example.com' WHERE id = %s",
            order["id"],
            database="oms",
        )
        # The replica has alice's order (her mark is passed) but not the change.
        status, detail = server.get(f"/api/v1/orders/{order['id']}/", key=seeded["alice"])
    finally:
        cluster.replica.sql("SELECT pg_wal_replay_resume()")
    assert status == 200
    assert detail["email"] == "alice@example.com"


def _admin_session(server: AsgiServer) -> str:
    """Sign in to the admin as the seeded superuser: the Cookie header to send."""
    connection = server.connection()
    connection.request("GET", "/admin/login/")
    response = connection.getresponse()
    page = response.read().decode()
    cookies = SimpleCookie(response.headers["Set-Cookie"])
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    csrf = cookies["csrftoken"].value
    connection.request(
        "POST",
        "/admin/login/",
        body=urlencode(
            {"csrfmiddlewaretoken": token.group(1), "username": "admin", "password": "password"}
        ),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf}",
            "Referer": f"{server.url}/admin/login/",
        },
    )
    response = connection.getresponse()
    response.read()
    assert response.status == 302, response.status
    cookies = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or ():
        cookies.load(header)
    session = cookies["sessionid"].value
    csrf = cookies["csrftoken"].value if "csrftoken" in cookies else csrf
    connection.close()
    return f"csrftoken={csrf}; sessionid={session}"


def _admin_page(server: AsgiServer, path: str, cookie: str) -> str:
    connection = server.connection()
    try:
        connection.request("GET", path, headers={"Cookie": cookie})
        response = connection.getresponse()
        assert response.status == 200, response.status
        return response.read().decode()
    finally:
        connection.close()


def test_admin_pages_read_the_replica_within_the_bound(cluster, seeded, server):
    # given: a fresh session, then replay paused just after a fresh transaction
    cookie = _admin_session(server)
    cluster.primary.sql("CREATE TABLE IF NOT EXISTS tick (at timestamptz)")
    cluster.primary.sql("INSERT INTO tick VALUES (now())")
    cluster.wait_for_replay()
    cluster.replica.sql("SELECT pg_wal_replay_pause()")
    paused_at = time.monotonic()
    try:
        cluster.primary.sql(
            "UPDATE orders_order SET email = 'bob.admin@example.com' WHERE id = %s",
            seeded["bobs_order"],
            database="oms",
        )
        path = f"/admin/orders/order/{seeded['bobs_order']}/change/"

        # when: staff open the order within the bound, then past it
        within = _admin_page(server, path, cookie)
        within_bound = time.monotonic() - paused_at < MAX_LAG_SECONDS
        time.sleep(max(0.0, MAX_LAG_SECONDS + 1 - (time.monotonic() - paused_at)))
        past = _admin_page(server, path, cookie)
    finally:
        cluster.replica.sql("SELECT pg_wal_replay_resume()")
        cluster.wait_for_replay()

    # then: the session was read on the primary (the page opened), the order on the
    # replica until the lag passed the bound
    assert within_bound, "too slow to see the lag"
    assert "bob.admin@example.com" not in within
    assert "bob.admin@example.com" in past


def test_reads_go_to_the_primary_while_the_replica_cannot_be_reached(
    cluster, seeded, tmp_path_factory
):
    # given: a server whose replica URL names a port nothing listens on
    server = AsgiServer(
        workdir=Path(tmp_path_factory.mktemp("no-replica-server")),
        env={
            "DATABASE_URL": cluster.primary.url("oms"),
            "DATABASE_REPLICA_URL": f"postgres://postgres@127.0.0.1:{free_port()}/oms",
            "DATABASE_REPLICA_CONNECT_TIMEOUT_SECONDS": "1",
        },
    ).start()
    try:
        # when
        started = time.monotonic()
        status, detail = server.get(f"/api/v1/orders/{seeded['bobs_order']}/", key=seeded["bob"])
        list_status, _page = server.get("/api/v1/orders/", key=seeded["bob"])
        took = time.monotonic() - started
    finally:
        server.stop()

    # then: answered from the primary, after one connect timeout at most (the second
    # request does not try again)
    assert (status, list_status) == (200, 200)
    assert took < 5, took
    assert detail["id"] == seeded["bobs_order"]
