"""Long polls and live streams of the order event log over real HTTP, against the API
served by uvicorn in a child process (the test database, its own redis-server).

The server reads the log again only every 30 s without a wake-up
(ORDER_EVENT_POLL_SECONDS), so an event arriving within seconds proves the PostgreSQL
NOTIFY wake-up works.
"""

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.actors import Actor
from flows.place import OrderLineRequest, order_place
from flows.transitions import order_transition_by_name
from tests.conftest import api_key_for, stock_receive
from tests.factories import ProductFactory, StaffFactory, UserFactory, WarehouseFactory
from tests.support.asgi_server import AsgiServer, EventStream, open_stream
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)

STREAMS_PER_USER = 2
# Well under the 30 s poll interval: only a wake-up answers this fast.
PROMPTLY = 5.0


@pytest.fixture(scope="module")
def server(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiServer]:
    redis = RedisServer(workdir=tmp_path_factory.mktemp("redis")).start()
    asgi = AsgiServer(
        workdir=tmp_path_factory.mktemp("uvicorn"),
        env={
            "EVENT_STREAM_REDIS_URL": redis.url,
            "ORDER_EVENT_STREAMS_PER_USER": str(STREAMS_PER_USER),
            "ORDER_EVENT_POLL_SECONDS": "30",
            "ORDER_EVENT_STREAM_HEARTBEAT_SECONDS": "1",
        },
    ).start()
    try:
        yield asgi
    finally:
        asgi.stop()
        redis.stop()


@pytest.fixture
def customer() -> Any:
    return UserFactory()


@pytest.fixture
def order(customer: Any) -> Any:
    product = ProductFactory(price=100)
    stock_receive(product, WarehouseFactory(), 10)
    return order_place(
        customer=customer,
        email=customer.email,
        shipping_address={
            "name": "Ada",
            "line1": "1 Way",
            "city": "London",
            "postal_code": "N1",
            "country": "GB",
        },
        lines=[OrderLineRequest(product.sku, 1)],
        actor=Actor(user=customer),
    )


def take(order: Any, transition: str) -> None:
    order_transition_by_name(order_id=order.pk, transition=transition, actor=Actor.system())


def next_event(stream: EventStream) -> tuple[Any, float]:
    started = time.monotonic()
    event = stream.next_event()
    return event, time.monotonic() - started


def test_an_order_stream_sees_each_change_as_it_commits_and_resumes_without_gap(
    server, order, customer
):
    # given the owner's stream of the order, open from its start
    key = api_key_for(customer)
    path = f"/api/v1/orders/{order.pk}/stream/"
    stream = open_stream(server, path, key=key)
    assert stream.status == 200
    assert stream.response.getheader("Content-Type").startswith("text/event-stream")
    created = stream.next_event()
    assert (created.id, created.event) == ("1", "order.created")

    # when the order is confirmed, routed and shipped, each event arrives as it commits
    seen = [created]
    for transition in ("confirm", "route", "ship"):
        take(order, transition)
        event, waited = next_event(stream)
        assert waited < PROMPTLY, (transition, waited)
        seen.append(event)
    assert [(e.id, e.event) for e in seen] == [
        ("1", "order.created"),
        ("2", "order.confirmed"),
        ("3", "order.routed"),
        ("4", "order.shipped"),
    ]
    body = json.loads(seen[-1].data)
    assert (body["sequence"], body["type"], body["data"]["order"]["status"]) == (
        4,
        "order.shipped",
        "shipped",
    )

    # and when the client drops, the order is delivered meanwhile, and it comes back
    stream.close()
    take(order, "deliver")
    resumed = open_stream(server, path, key=key, last_event_id=seen[-1].id)
    try:
        event = resumed.next_event()
        # then it gets what it missed, once, and nothing it had
        assert (event.id, event.event) == ("5", "order.delivered")
        assert json.loads(event.data)["sequence"] == 5
        # and a quiet stream carries heartbeat comments (every 1 s in this server)
        started = time.monotonic()
        assert resumed.next_comment() == "heartbeat"
        assert time.monotonic() - started < 3
    finally:
        resumed.close()


def test_the_feed_stream_ids_are_cursors_and_resume_misses_nothing(server, order):
    # given a service account reading the feed stream of order changes
    key = api_key_for(StaffFactory(groups=["service"]), scopes=["events:read"])
    path = "/api/v1/events/stream/?types=order.confirmed,order.routed,order.shipped,order.delivered"
    # (no promptness asserted: a transaction anywhere on the shared PostgreSQL server
    # holds the feed back while it runs; the order stream's test times the wake-up)
    stream = open_stream(server, path, key=key, timeout=40)
    assert stream.status == 200

    # when the order goes through its life
    take(order, "confirm")
    take(order, "route")
    first = stream.next_event()
    second = stream.next_event()
    stream.close()
    take(order, "ship")
    take(order, "deliver")
    resumed = open_stream(server, path, key=key, last_event_id=second.id, timeout=40)
    try:
        rest = [resumed.next_event(), resumed.next_event()]
    finally:
        resumed.close()

    # then every change arrives once, in order, each id the feed cursor after it
    events = [first, second, *rest]
    assert [e.event for e in events] == [
        "order.confirmed",
        "order.routed",
        "order.shipped",
        "order.delivered",
    ]
    assert [e.id for e in events] == [json.loads(e.data)["cursor"] for e in events]
    assert len({e.id for e in events}) == 4


def test_a_long_poll_returns_as_soon_as_an_event_commits(server, order, customer):
    # given the owner waiting up to 20 s for the order's next event
    key = api_key_for(customer)
    answers: list[tuple[int, Any, float]] = []

    def poll() -> None:
        started = time.monotonic()
        status, body = server.get(
            f"/api/v1/orders/{order.pk}/events/?after_sequence=1&wait=20", key=key, timeout=30
        )
        answers.append((status, body, time.monotonic() - started))

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.5)

    # when the order is confirmed
    take(order, "confirm")
    waiter.join(30)

    # then the answer comes at once with the event, long before the 20 s
    ((status, body, elapsed),) = answers
    assert status == 200
    assert [e["type"] for e in body["events"]] == ["order.confirmed"]
    assert 0.4 < elapsed < PROMPTLY


def test_a_long_poll_answers_empty_after_wait_and_other_requests_are_served_meanwhile(
    server, order, customer
):
    # given five requests waiting on the feed and on the order, with nothing happening
    key = api_key_for(customer)
    staff_key = api_key_for(StaffFactory(groups=["support"]))
    answers: list[tuple[int, Any, float]] = []

    def poll(path: str, poll_key: str) -> None:
        started = time.monotonic()
        status, body = server.get(path, key=poll_key, timeout=30)
        answers.append((status, body, time.monotonic() - started))

    waiters = [
        # (a type nothing here writes: the feed's horizon is the whole server's)
        threading.Thread(
            target=poll, args=("/api/v1/events/?types=order.refunded&wait=2", staff_key)
        )
        for _ in range(4)
    ] + [
        threading.Thread(
            target=poll, args=(f"/api/v1/orders/{order.pk}/events/?after_sequence=1&wait=2", key)
        )
    ]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.3)

    # when another request comes to the same process meanwhile
    started = time.monotonic()
    status, detail = server.get(f"/api/v1/orders/{order.pk}/", key=key)
    served_in = time.monotonic() - started
    for waiter in waiters:
        waiter.join(30)

    # then it is served at once, and the waiters answer empty once their 2 s are up
    assert (status, detail["id"]) == (200, str(order.pk))
    assert served_in < 1.0
    assert len(answers) == 5
    for status, body, elapsed in answers:
        assert status == 200
        assert body["events"] == []
        assert 1.9 < elapsed < 4
    assert {body.get("next_cursor") for _, body, _ in answers} == {None}


def test_open_streams_are_bounded_per_user_across_requests(server, order, customer):
    # given a customer with as many streams open as allowed
    key = api_key_for(customer)
    path = f"/api/v1/orders/{order.pk}/stream/"
    streams = [open_stream(server, path, key=key) for _ in range(STREAMS_PER_USER)]
    try:
        assert [s.status for s in streams] == [200] * STREAMS_PER_USER

        # when one more is opened, with a second key of the same user
        refused = open_stream(server, path, key=api_key_for(customer))

        # then it is refused as problem+json, and reads are still served
        assert refused.status == 429
        assert refused.response.getheader("Content-Type") == "application/problem+json"
        assert json.loads(refused.response.read())["code"] == "too_many_streams"
        refused.close()
        assert server.get(f"/api/v1/orders/{order.pk}/events/", key=key)[0] == 200

        # and once one is closed, a new one opens
        streams.pop().close()
        deadline = time.monotonic() + 5
        while True:
            again = open_stream(server, path, key=key)
            if again.status == 200 or time.monotonic() > deadline:
                break
            again.close()
            time.sleep(0.1)
        streams.append(again)
        assert again.status == 200
    finally:
        for stream in streams:
            stream.close()


@pytest.mark.parametrize(
    ("caller", "order_stream", "feed_stream"),
    [
        ("owner", 200, 403),
        ("other_customer", 404, 403),
        ("support", 200, 200),
        ("service", 403, 200),
    ],
)
def test_who_may_open_which_stream(server, order, customer, caller, order_stream, feed_stream):
    user = {
        "owner": lambda: customer,
        "other_customer": UserFactory,
        "support": lambda: StaffFactory(groups=["support"]),
        "service": lambda: StaffFactory(groups=["service"]),
    }[caller]()
    key = api_key_for(user)

    answered = []
    for path in (f"/api/v1/orders/{order.pk}/stream/", "/api/v1/events/stream/"):
        stream = open_stream(server, path, key=key)
        answered.append(stream.status)
        if stream.status != 200:
            assert stream.response.getheader("Content-Type") == "application/problem+json"
        stream.close()

    assert answered == [order_stream, feed_stream]
