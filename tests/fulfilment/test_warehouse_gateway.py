"""The HTTP warehouse gateway and the signing scheme, against the fake warehouse.

No database: the gateway and the fake know nothing of Django models.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core import signing
from core.signing import SIGNATURE_HEADER, SignatureInvalid
from fakes.warehouse import FakeWarehouse
from fulfilment.gateways import (
    Accepted,
    FulfilmentLine,
    FulfilmentRequest,
    HttpWarehouseGateway,
    Rejected,
    WarehouseOutcomeUnknown,
    WarehouseRequestRejected,
    WarehouseUnavailable,
    Withdrawn,
    WithdrawRefused,
)
from fulfilment.gateways.http import MAX_RESPONSE_BYTES, encode_request, encode_withdrawal
from tests.support.fake_warehouse import WAREHOUSE_SECRET, CallbackReceiver, wait_until

pytest_plugins = ("tests.support.fake_warehouse",)

_ids = itertools.count(1)


def new_key() -> str:
    return f"fulfilment-request-{next(_ids)}-{time.monotonic_ns()}"


def fulfilment_request(
    callback_url: str = "http://127.0.0.1:9/callbacks", skus: tuple[str, ...] = ("SKU-1",)
) -> FulfilmentRequest:
    number = next(_ids)
    return FulfilmentRequest(
        request_id=f"fr-{number}",
        order_number=f"ORD-{number:06d}",
        warehouse_code="wh-a",
        lines=[FulfilmentLine(sku=sku, name=f"Product {sku}", quantity=2) for sku in skus],
        shipping_address={"name": "Ada Lovelace", "city": "London", "country": "GB"},
        callback_url=callback_url,
    )


@pytest.fixture
def gateway() -> HttpWarehouseGateway:
    return HttpWarehouseGateway(timeout_connect=1.0, timeout_read=2.0)


# -- signing ---------------------------------------------------------------------------


def test_signature_verifies_for_the_exact_body_and_secret() -> None:
    body = b'{"event":"shipped"}'
    header = signing.sign(body, "secret-1", 1_700_000_000)

    assert header.startswith("t=1700000000,v1=")
    assert len(header.partition("v1=")[2]) == 64
    assert signing.verify(body, header, "secret-1", 300, now=1_700_000_100) == 1_700_000_000


@pytest.mark.parametrize(
    ("body", "secret"),
    [(b'{"event":"delivered"}', "secret-1"), (b'{"event":"shipped"}', "secret-2")],
    ids=["tampered-body", "wrong-secret"],
)
def test_signature_over_another_body_or_secret_is_forged(body: bytes, secret: str) -> None:
    header = signing.sign(b'{"event":"shipped"}', "secret-1", 1_700_000_000)

    with pytest.raises(SignatureInvalid) as caught:
        signing.verify(body, header, secret, 300, now=1_700_000_000)
    assert caught.value.reason == "forged"


def test_a_forged_signature_with_a_fresh_timestamp_is_forged() -> None:
    header = "t=1700000000,v1=" + "0" * 64

    with pytest.raises(SignatureInvalid) as caught:
        signing.verify(b"{}", header, "secret-1", 300, now=1_700_000_000)
    assert caught.value.reason == "forged"


@pytest.mark.parametrize("offset", [301, -301], ids=["old", "from-the-future"])
def test_a_genuine_signature_outside_the_tolerance_is_stale(offset: int) -> None:
    header = signing.sign(b"{}", "secret-1", 1_700_000_000)

    with pytest.raises(SignatureInvalid) as caught:
        signing.verify(b"{}", header, "secret-1", 300, now=1_700_000_000 + offset)
    assert caught.value.reason == "stale"
    assert signing.verify(b"{}", header, "secret-1", 300, now=1_700_000_300) == 1_700_000_000


@pytest.mark.parametrize(
    "header",
    ["garbage", "v1=" + "a" * 64, "t=soon,v1=" + "a" * 64, "t=1,t=2,v1=ab", "t=-5,v1=ab"],
)
def test_an_unreadable_header_is_malformed(header: str) -> None:
    with pytest.raises(SignatureInvalid) as caught:
        signing.verify(b"{}", header, "secret-1", 300, now=1)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize("header", [None, "", "  ", "t=1700000000", "t=1700000000,v0=abc"])
def test_a_missing_signature_is_unsigned(header: str | None) -> None:
    with pytest.raises(SignatureInvalid) as caught:
        signing.verify(b"{}", header, "secret-1", 300, now=1_700_000_000)
    assert caught.value.reason == "unsigned"


def test_any_one_of_several_signatures_may_match_while_a_secret_rotates() -> None:
    new = signing.sign(b"{}", "new-secret", 1_700_000_000)
    old = signing.sign(b"{}", "old-secret", 1_700_000_000)
    header = f"{old},v1={new.partition('v1=')[2]}"

    assert signing.verify(b"{}", header, "new-secret", 300, now=1_700_000_000)
    assert signing.verify(b"{}", header, "old-secret", 300, now=1_700_000_000)


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        signing.sign(b"{}", "", 1)
    with pytest.raises(ValueError, match="secret"):
        signing.verify(b"{}", "t=1,v1=ab", "", 300)


# -- against the fake warehouse --------------------------------------------------------


def test_an_accepted_request_returns_the_shipment_reference(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    request = fulfilment_request(callback_receiver.url)
    key = new_key()

    result = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, key)

    assert isinstance(result, Accepted)
    assert result.shipment_reference.startswith("shp_")
    [seen] = fake_warehouse.requests()
    assert seen["idempotency_key"] == key
    assert seen["signature_ok"] is True
    assert seen["body"] == request.to_payload()
    assert (seen["status"], seen["duplicate"]) == (201, False)


def test_a_request_with_a_sku_the_warehouse_cannot_fill_is_rejected(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    fake_warehouse.configure(reject_skus=["SKU-GONE"])
    request = fulfilment_request(callback_receiver.url, skus=("SKU-1", "SKU-GONE"))

    result = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, new_key())

    assert result == Rejected(reason="out of stock: SKU-GONE", code="out_of_stock")
    assert fake_warehouse.shipments() == []


def test_a_server_error_is_unavailable_and_not_carried_out(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    fake_warehouse.configure(mode="error500", count=1)
    request = fulfilment_request(callback_receiver.url)
    key = new_key()

    with pytest.raises(WarehouseUnavailable) as caught:
        gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, key)
    assert caught.value.status == 500
    assert fake_warehouse.shipments() == []

    retried = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, key)
    assert isinstance(retried, Accepted)
    assert [r["duplicate"] for r in fake_warehouse.requests()] == [False, False]


def test_a_hang_beyond_the_read_timeout_is_an_unknown_outcome_resolved_by_the_same_key(
    fake_warehouse: FakeWarehouse, callback_receiver: CallbackReceiver
) -> None:
    gateway = HttpWarehouseGateway(timeout_connect=1.0, timeout_read=0.3)
    fake_warehouse.configure(mode="hang", count=1)
    request = fulfilment_request(callback_receiver.url)
    key = new_key()

    started = time.monotonic()
    with pytest.raises(WarehouseOutcomeUnknown):
        gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, key)
    assert time.monotonic() - started < 2.0

    # The warehouse did carry it out: the retry with the same key says so, once.
    retried = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, key)
    [shipment] = fake_warehouse.shipments()
    assert retried == Accepted(shipment_reference=shipment["shipment_reference"])
    assert [(r["answered"], r["duplicate"]) for r in fake_warehouse.requests()] == [
        (False, False),
        (True, True),
    ]


def test_a_refused_connection_is_unavailable(gateway: HttpWarehouseGateway) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
        # Bound but not listening: the port stays ours and connecting is refused.
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]

        with pytest.raises(WarehouseUnavailable) as caught:
            gateway.send(
                f"http://127.0.0.1:{port}/fulfilment-requests",
                WAREHOUSE_SECRET,
                fulfilment_request(),
                new_key(),
            )
    assert caught.value.status is None


def test_the_same_key_twice_is_one_fulfilment_with_the_same_answer(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    request = fulfilment_request(callback_receiver.url)
    key = new_key()

    first = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, key)
    second = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, key)

    assert first == second
    assert len(fake_warehouse.shipments()) == 1
    assert [r["duplicate"] for r in fake_warehouse.requests()] == [False, True]


def test_the_same_key_sent_concurrently_is_still_one_fulfilment(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    request = fulfilment_request(callback_receiver.url)
    key = new_key()
    barrier = threading.Barrier(5)
    results: list[object] = []

    def send() -> None:
        barrier.wait(timeout=5)
        results.append(gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, key))

    threads = [threading.Thread(target=send, daemon=True) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    [shipment] = fake_warehouse.shipments()
    assert results == [Accepted(shipment["shipment_reference"])] * 5
    assert sorted(r["duplicate"] for r in fake_warehouse.requests()) == [False] + [True] * 4


def test_the_same_key_replays_a_rejection_too(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    fake_warehouse.configure(reject_skus=["SKU-1"])
    request = fulfilment_request(callback_receiver.url)
    key = new_key()
    first = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, key)
    fake_warehouse.configure(reject_skus=[])

    second = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, key)

    assert isinstance(first, Rejected)
    assert second == first


def test_a_request_signed_with_the_wrong_secret_is_refused_as_a_bug(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    request = fulfilment_request(callback_receiver.url)

    with pytest.raises(WarehouseRequestRejected) as caught:
        gateway.send(fake_warehouse.requests_url, "not-the-secret", request, new_key())

    assert (caught.value.status, caught.value.error_code) == (401, "signature_invalid")
    [seen] = fake_warehouse.requests()
    assert (seen["signature_ok"], seen["signature_error"]) == (False, "forged")
    assert fake_warehouse.shipments() == []


def test_a_request_signed_by_a_slow_clock_is_refused_as_stale(
    fake_warehouse: FakeWarehouse, callback_receiver: CallbackReceiver
) -> None:
    gateway = HttpWarehouseGateway(1.0, 2.0, clock=lambda: time.time() - 3600)

    with pytest.raises(WarehouseRequestRejected) as caught:
        gateway.send(
            fake_warehouse.requests_url,
            WAREHOUSE_SECRET,
            fulfilment_request(callback_receiver.url),
            new_key(),
        )

    assert caught.value.status == 401
    assert fake_warehouse.requests()[0]["signature_error"] == "stale"


def test_callbacks_arrive_signed_shipped_before_delivered(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    request = fulfilment_request(callback_receiver.url)
    result = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, new_key())
    assert isinstance(result, Accepted)

    shipped, delivered = callback_receiver.wait_for(2)

    for callback in (shipped, delivered):
        signing.verify(callback.body, callback.header(SIGNATURE_HEADER), WAREHOUSE_SECRET, 60)
        assert callback.header("X-Warehouse-Code") == "wh-a"
        assert callback.header("Content-Type") == "application/json"
        assert callback.path == "/warehouse-callbacks"
        assert callback.event["shipment_reference"] == result.shipment_reference
        assert callback.event["request_id"] == request.request_id
    assert shipped.event["event"] == "shipped"
    assert shipped.event["carrier"] == "DHL"
    assert shipped.event["tracking_number"]
    assert delivered.event["event"] == "delivered"
    assert delivered.event["tracking_number"] == shipped.event["tracking_number"]
    assert shipped.event["event_id"] != delivered.event["event_id"]
    wait_until(lambda: fake_warehouse.shipments()[0]["state"] == "delivered", what="delivered")


def test_a_callback_the_receiver_fails_is_retried_with_the_same_event(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    callback_receiver.fail_next(1, status=500)

    gateway.send(
        fake_warehouse.requests_url,
        WAREHOUSE_SECRET,
        fulfilment_request(callback_receiver.url),
        new_key(),
    )
    failed, retried, delivered = callback_receiver.wait_for(3)

    assert [c.answered for c in (failed, retried, delivered)] == [500, 200, 200]
    assert [c.event["event"] for c in (failed, retried, delivered)] == [
        "shipped",
        "shipped",
        "delivered",
    ]
    assert retried.body == failed.body
    signing.verify(retried.body, retried.header(SIGNATURE_HEADER), WAREHOUSE_SECRET, 60)
    wait_until(lambda: len(fake_warehouse.callbacks()) == 3, what="three callback attempts")
    assert [(c["event"], c["attempt"], c["status"]) for c in fake_warehouse.callbacks()] == [
        ("shipped", 1, 500),
        ("shipped", 2, 200),
        ("delivered", 1, 200),
    ]


# -- withdrawals against the fake warehouse ---------------------------------------------


def withdraw(
    gateway: HttpWarehouseGateway,
    fake: FakeWarehouse,
    request_id: str,
    key: str | None = None,
    secret: str = WAREHOUSE_SECRET,
) -> Any:
    return gateway.withdraw(
        fake.requests_url, secret, request_id, "ORD-000001", "customer cancelled", key or new_key()
    )


def test_a_withdrawal_before_shipping_is_withdrawn_and_no_callback_is_ever_sent(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    fake_warehouse.configure(ship_after=0.5)
    request = fulfilment_request(callback_receiver.url)
    gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, new_key())

    result = withdraw(gateway, fake_warehouse, request.request_id)

    assert result == Withdrawn(request_id=request.request_id)
    time.sleep(0.8)  # past ship_after: a shipped callback would have been sent by now
    assert callback_receiver.received == []
    assert fake_warehouse.callbacks() == []
    assert [s["state"] for s in fake_warehouse.shipments()] == ["withdrawn"]
    [seen] = fake_warehouse.withdrawals()
    assert (seen["request_id"], seen["status"], seen["result"]) == (
        request.request_id,
        200,
        "withdrawn",
    )


def test_a_withdrawal_after_shipping_is_refused_as_already_shipped(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    request = fulfilment_request(callback_receiver.url)
    accepted = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, new_key())
    assert isinstance(accepted, Accepted)
    callback_receiver.wait_for(1)

    result = withdraw(gateway, fake_warehouse, request.request_id)

    assert isinstance(result, WithdrawRefused)
    assert result.code == "already_shipped"
    assert accepted.shipment_reference in result.reason
    shipped, delivered = callback_receiver.wait_for(2)
    assert [shipped.event["event"], delivered.event["event"]] == ["shipped", "delivered"]


def test_withdrawing_an_unknown_request_leaves_it_rejected_when_it_arrives_later(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    request = fulfilment_request(callback_receiver.url)

    withdrawn = withdraw(gateway, fake_warehouse, request.request_id)
    delayed = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, new_key())

    assert withdrawn == Withdrawn(request_id=request.request_id)
    assert delayed == Rejected(reason="the request was withdrawn", code="withdrawn")
    assert fake_warehouse.shipments() == []


def test_withdrawing_twice_is_withdrawn_twice_with_the_same_key_or_another(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    fake_warehouse.configure(auto_callbacks=False)
    request = fulfilment_request(callback_receiver.url)
    gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, new_key())
    key = new_key()

    results = [
        withdraw(gateway, fake_warehouse, request.request_id, key),
        withdraw(gateway, fake_warehouse, request.request_id, key),
        withdraw(gateway, fake_warehouse, request.request_id),
    ]

    assert results == [Withdrawn(request_id=request.request_id)] * 3
    assert [w["duplicate"] for w in fake_warehouse.withdrawals()] == [False, True, False]
    assert [s["state"] for s in fake_warehouse.shipments()] == ["withdrawn"]


def test_a_request_id_that_needs_escaping_is_withdrawn_by_that_id(
    gateway: HttpWarehouseGateway, fake_warehouse: FakeWarehouse
) -> None:
    result = withdraw(gateway, fake_warehouse, "fr/7 ?#")

    assert result == Withdrawn(request_id="fr/7 ?#")
    assert fake_warehouse.withdrawals()[0]["request_id"] == "fr/7 ?#"


def test_a_warehouse_told_to_refuse_withdrawals_answers_already_shipped(
    gateway: HttpWarehouseGateway, fake_warehouse: FakeWarehouse
) -> None:
    fake_warehouse.configure(withdraw_mode="refuse")

    result = withdraw(gateway, fake_warehouse, "fr-never-sent")

    assert isinstance(result, WithdrawRefused)
    assert result.code == "already_shipped"


def test_a_server_error_on_withdrawal_is_unavailable_and_withdraws_nothing(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    fake_warehouse.configure(auto_callbacks=False, withdraw_mode="error500")
    request = fulfilment_request(callback_receiver.url)
    gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, new_key())

    with pytest.raises(WarehouseUnavailable) as caught:
        withdraw(gateway, fake_warehouse, request.request_id)

    assert caught.value.status == 500
    assert [s["state"] for s in fake_warehouse.shipments()] == ["accepted"]


def test_a_hanging_withdrawal_is_an_unknown_outcome_resolved_by_the_same_key(
    fake_warehouse: FakeWarehouse, callback_receiver: CallbackReceiver
) -> None:
    gateway = HttpWarehouseGateway(timeout_connect=1.0, timeout_read=0.3)
    fake_warehouse.configure(auto_callbacks=False, withdraw_mode="hang")
    request = fulfilment_request(callback_receiver.url)
    gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, new_key())
    key = new_key()

    with pytest.raises(WarehouseOutcomeUnknown):
        withdraw(gateway, fake_warehouse, request.request_id, key)

    # The warehouse did withdraw it: the retry with the same key says so.
    fake_warehouse.configure(withdraw_mode="allow")
    assert withdraw(gateway, fake_warehouse, request.request_id, key) == Withdrawn(
        request.request_id
    )
    assert [s["state"] for s in fake_warehouse.shipments()] == ["withdrawn"]
    assert [(w["answered"], w["duplicate"]) for w in fake_warehouse.withdrawals()] == [
        (False, False),
        (True, True),
    ]


def test_a_withdrawal_signed_with_the_wrong_secret_is_refused_as_a_bug(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    fake_warehouse.configure(auto_callbacks=False)
    request = fulfilment_request(callback_receiver.url)
    gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, new_key())

    with pytest.raises(WarehouseRequestRejected) as caught:
        withdraw(gateway, fake_warehouse, request.request_id, secret="not-the-secret")

    assert (caught.value.status, caught.value.error_code) == (401, "signature_invalid")
    assert fake_warehouse.withdrawals()[0]["signature_error"] == "forged"
    assert [s["state"] for s in fake_warehouse.shipments()] == ["accepted"]


# -- answers the fake does not give: a scripted stub -----------------------------------


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _StubServer
    timeout = 5.0

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((dict(self.headers.items()), body))
        self.server.paths.append(self.path)
        status, payload, headers = self.server.answer
        if status == 0:  # drop the connection after reading the request
            self.close_connection = True
            return
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.answer: tuple[int, Any, dict[str, str]] = (200, {}, {})
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.paths: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/fulfilment-requests"


@pytest.fixture
def stub() -> Iterator[_StubServer]:
    server = _StubServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5.0)


def test_the_request_carries_a_json_body_an_idempotency_key_and_a_valid_signature(
    gateway: HttpWarehouseGateway, stub: _StubServer
) -> None:
    stub.answer = (202, {"status": "accepted", "shipment_reference": "S-1"}, {})
    request = fulfilment_request()

    result = gateway.send(stub.url, "stub-secret", request, "key-1")

    assert result == Accepted(shipment_reference="S-1")
    [(headers, body)] = stub.seen
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == "key-1"
    signing.verify(body, headers[SIGNATURE_HEADER], "stub-secret", 60)
    assert json.loads(body) == request.to_payload()
    assert body == encode_request(request)


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (200, {"status": "accepted", "shipment_reference": "S-9"}, Accepted("S-9")),
        (
            422,
            {"status": "rejected", "code": "closed", "reason": "shut"},
            Rejected("shut", "closed"),
        ),
        (
            409,
            {"status": "rejected", "code": "out_of_stock", "reason": "none"},
            Rejected("none", "out_of_stock"),
        ),
        (429, {"detail": "slow down"}, WarehouseUnavailable),
        (503, b"<html>down</html>", WarehouseUnavailable),
        (409, {"status": "error", "code": "request_in_flight"}, WarehouseOutcomeUnknown),
        (200, b"not json", WarehouseOutcomeUnknown),
        (200, {"status": "accepted"}, WarehouseOutcomeUnknown),
        (204, b"", WarehouseOutcomeUnknown),
        (200, b" " * (MAX_RESPONSE_BYTES + 1), WarehouseOutcomeUnknown),
        (400, {"status": "error", "code": "invalid_request"}, WarehouseRequestRejected),
        (404, b"", WarehouseRequestRejected),
        (422, {"detail": "no"}, WarehouseRequestRejected),
        (0, b"", WarehouseOutcomeUnknown),
    ],
)
def test_each_answer_maps_to_a_result_or_a_typed_failure(
    gateway: HttpWarehouseGateway, stub: _StubServer, status: int, payload: Any, expected: Any
) -> None:
    stub.answer = (status, payload, {})

    if isinstance(expected, type):
        with pytest.raises(expected):
            gateway.send(stub.url, "stub-secret", fulfilment_request(), new_key())
    else:
        assert gateway.send(stub.url, "stub-secret", fulfilment_request(), new_key()) == expected


def test_a_withdrawal_posts_a_signed_body_with_a_key_under_the_request_id(
    gateway: HttpWarehouseGateway, stub: _StubServer
) -> None:
    stub.answer = (200, {"status": "withdrawn", "request_id": "fr-1"}, {})

    result = gateway.withdraw(
        stub.url + "/", "stub-secret", "fr-1", "ORD-000001", "customer cancelled", "key-1"
    )

    assert result == Withdrawn(request_id="fr-1")
    [(headers, body)] = stub.seen
    assert stub.paths == ["/fulfilment-requests/fr-1/withdraw"]
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == "key-1"
    signing.verify(body, headers[SIGNATURE_HEADER], "stub-secret", 60)
    assert json.loads(body) == {
        "request_id": "fr-1",
        "order_number": "ORD-000001",
        "reason": "customer cancelled",
    }
    assert body == encode_withdrawal("fr-1", "ORD-000001", "customer cancelled")


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (200, {"status": "withdrawn", "request_id": "fr-1"}, Withdrawn("fr-1")),
        (202, {"status": "withdrawn"}, Withdrawn("fr-1")),
        (
            409,
            {"status": "refused", "code": "already_shipped", "reason": "gone"},
            WithdrawRefused("already_shipped", "gone"),
        ),
        (200, {"status": "withdrawn", "request_id": "fr-2"}, WarehouseOutcomeUnknown),
        (200, {"status": "accepted"}, WarehouseOutcomeUnknown),
        (200, b"not json", WarehouseOutcomeUnknown),
        (409, {"status": "error", "code": "request_in_flight"}, WarehouseOutcomeUnknown),
        (0, b"", WarehouseOutcomeUnknown),
        (429, {"detail": "slow down"}, WarehouseUnavailable),
        (500, {"status": "error"}, WarehouseUnavailable),
        (401, {"status": "error", "code": "signature_invalid"}, WarehouseRequestRejected),
        (404, b"", WarehouseRequestRejected),
        (307, b"", WarehouseRequestRejected),
    ],
)
def test_each_withdrawal_answer_maps_to_a_result_or_a_typed_failure(
    gateway: HttpWarehouseGateway, stub: _StubServer, status: int, payload: Any, expected: Any
) -> None:
    stub.answer = (status, payload, {})

    def call() -> object:
        return gateway.withdraw(stub.url, "stub-secret", "fr-1", "ORD-1", "", new_key())

    if isinstance(expected, type):
        with pytest.raises(expected):
            call()
    else:
        assert call() == expected


@pytest.mark.parametrize(
    ("url", "secret", "request_id", "order_number", "key"),
    [
        ("ftp://127.0.0.1/x", "s", "fr-1", "ORD-1", "k"),
        ("http://127.0.0.1:9/x", "", "fr-1", "ORD-1", "k"),
        ("http://127.0.0.1:9/x", "s", "", "ORD-1", "k"),
        ("http://127.0.0.1:9/x", "s", "fr-1", "", "k"),
        ("http://127.0.0.1:9/x", "s", "fr-1", "ORD-1", "k\r\nX-Evil: 1"),
    ],
)
def test_bad_withdrawal_arguments_raise_value_error_before_sending(
    gateway: HttpWarehouseGateway,
    url: str,
    secret: str,
    request_id: str,
    order_number: str,
    key: str,
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by argument
        gateway.withdraw(url, secret, request_id, order_number, "cancelled", key)


def test_a_redirect_is_not_followed(gateway: HttpWarehouseGateway, stub: _StubServer) -> None:
    stub.answer = (307, b"", {"Location": "http://127.0.0.1:9/elsewhere"})

    with pytest.raises(WarehouseRequestRejected) as caught:
        gateway.send(stub.url, "stub-secret", fulfilment_request(), new_key())

    assert caught.value.status == 307
    assert len(stub.seen) == 1


def test_the_error_code_of_a_refused_request_is_kept(
    gateway: HttpWarehouseGateway, stub: _StubServer
) -> None:
    stub.answer = (400, {"status": "error", "code": "invalid_request", "detail": "no lines"}, {})

    with pytest.raises(WarehouseRequestRejected) as caught:
        gateway.send(stub.url, "stub-secret", fulfilment_request(), new_key())

    assert (caught.value.status, caught.value.error_code) == (400, "invalid_request")
    assert "no lines" in caught.value.message


@pytest.mark.parametrize(
    ("url", "secret", "key", "request_change"),
    [
        ("ftp://127.0.0.1/x", "s", "k", {}),
        ("http:///nohost", "s", "k", {}),
        ("http://127.0.0.1:9/x", "", "k", {}),
        ("http://127.0.0.1:9/x", "s", "", {}),
        ("http://127.0.0.1:9/x", "s", "k\r\nX-Evil: 1", {}),
        ("http://127.0.0.1:9/x", "s", "k" * 256, {}),
        ("http://127.0.0.1:9/x", "s", "k", {"lines": []}),
        ("http://127.0.0.1:9/x", "s", "k", {"lines": [FulfilmentLine("A", "a", 0)]}),
        ("http://127.0.0.1:9/x", "s", "k", {"callback_url": "not a url"}),
    ],
)
def test_bad_arguments_raise_value_error_before_sending(
    gateway: HttpWarehouseGateway, url: str, secret: str, key: str, request_change: dict[str, Any]
) -> None:
    request = fulfilment_request()
    request = FulfilmentRequest(**{**request.__dict__, **request_change})

    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by argument
        gateway.send(url, secret, request, key)


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        HttpWarehouseGateway(timeout_connect=0, timeout_read=1)
