"""The fake warehouse keeps its contract: signatures, idempotency, modes, callbacks, CLI.

No database. Raw HTTP here where the gateway would hide what the fake answered.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import requests

from core import signing
from core.signing import SIGNATURE_HEADER
from fakes.warehouse import ControlClient, FakeWarehouse
from fulfilment.gateways import (
    Accepted,
    FulfilmentLine,
    FulfilmentRequest,
    HttpWarehouseGateway,
    Rejected,
    WarehouseOutcomeUnknown,
)
from fulfilment.gateways.http import encode_request, encode_withdrawal, withdraw_url
from tests.support.fake_warehouse import (
    REPO_ROOT,
    WAREHOUSE_SECRET,
    CallbackReceiver,
    running_fake_warehouse,
    stop_process,
    wait_until,
)

pytest_plugins = ("tests.support.fake_warehouse",)

_ids = itertools.count(1)
TIMEOUT = (1.0, 5.0)


def fulfilment_request(callback_url: str, *skus: str) -> FulfilmentRequest:
    number = next(_ids)
    return FulfilmentRequest(
        request_id=f"fr-{number}",
        order_number=f"ORD-{number:06d}",
        warehouse_code="wh-b",
        lines=[FulfilmentLine(sku=sku, name=sku.title(), quantity=1) for sku in skus or ("A",)],
        shipping_address={"city": "Leeds"},
        callback_url=callback_url,
    )


def post(
    url: str,
    body: bytes,
    *,
    key: str | None,
    secret: str | None = WAREHOUSE_SECRET,
    signed_at: int | None = None,
) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    if secret is not None:
        headers[SIGNATURE_HEADER] = signing.sign(body, secret, signed_at or int(time.time()))
    return requests.post(url, data=body, headers=headers, timeout=TIMEOUT)


@pytest.fixture
def gateway() -> HttpWarehouseGateway:
    return HttpWarehouseGateway(timeout_connect=1.0, timeout_read=2.0)


def test_an_unsigned_request_gets_401_and_is_not_remembered(
    fake_warehouse: FakeWarehouse, callback_receiver: CallbackReceiver
) -> None:
    body = encode_request(fulfilment_request(callback_receiver.url))

    unsigned = post(fake_warehouse.requests_url, body, key="k-1", secret=None)
    signed = post(fake_warehouse.requests_url, body, key="k-1")

    assert unsigned.status_code == 401
    assert unsigned.json()["reason"] == "unsigned"
    assert signed.status_code == 201
    seen = [(r["signature_ok"], r["signature_error"]) for r in fake_warehouse.requests()]
    assert seen == [(False, "unsigned"), (True, None)]
    assert len(fake_warehouse.shipments()) == 1


def test_a_replayed_key_gets_the_stored_answer_marked_replayed(
    fake_warehouse: FakeWarehouse, callback_receiver: CallbackReceiver
) -> None:
    body = encode_request(fulfilment_request(callback_receiver.url))

    first = post(fake_warehouse.requests_url, body, key="k-1")
    again = post(fake_warehouse.requests_url, body, key="k-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


def test_a_key_reused_with_another_body_is_refused(
    fake_warehouse: FakeWarehouse, callback_receiver: CallbackReceiver
) -> None:
    post(
        fake_warehouse.requests_url,
        encode_request(fulfilment_request(callback_receiver.url)),
        key="k-1",
    )

    other = post(
        fake_warehouse.requests_url,
        encode_request(fulfilment_request(callback_receiver.url)),
        key="k-1",
    )

    assert other.status_code == 400
    assert other.json()["code"] == "idempotency_key_reused"
    assert len(fake_warehouse.shipments()) == 1


@pytest.mark.parametrize(
    ("body", "key"),
    [(b"{}", "k-1"), (b"not json", "k-1"), (None, None)],
    ids=["not-a-request", "not-json", "no-key"],
)
def test_a_request_it_cannot_read_gets_400(
    fake_warehouse: FakeWarehouse, body: Any, key: Any
) -> None:
    payload = body if body is not None else encode_request(fulfilment_request("http://x/"))

    answer = post(fake_warehouse.requests_url, payload, key=key)

    assert answer.status_code == 400
    assert fake_warehouse.shipments() == []


def test_a_mode_with_a_count_applies_to_the_next_requests_only(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    control = ControlClient(fake_warehouse.url)
    assert control.configure(mode="reject", count=2)["count"] == 2

    results = [
        gateway.send(
            fake_warehouse.requests_url,
            WAREHOUSE_SECRET,
            fulfilment_request(callback_receiver.url),
            f"k-{n}",
        )
        for n in range(3)
    ]

    assert [type(r) for r in results] == [Rejected, Rejected, Accepted]
    assert results[0] == Rejected(reason="the warehouse cannot fulfil it", code="cannot_fulfil")
    assert (control.behaviour()["mode"], control.behaviour()["count"]) == ("accept", None)


def test_a_mode_without_a_count_lasts_until_changed(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    control = ControlClient(fake_warehouse.url)
    control.configure(mode="reject")

    def send(key: str) -> Any:
        request = fulfilment_request(callback_receiver.url)
        return gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, key)

    assert [type(send(f"k-{n}")) for n in range(3)] == [Rejected] * 3
    control.configure(mode="accept")
    assert isinstance(send("k-after"), Accepted)


@pytest.mark.parametrize(
    "changes",
    [
        {"mode": "explode"},
        {"count": 2},
        {"mode": "reject", "count": 0},
        {"reject_skus": "A,B"},
        {"ship_after": -1},
        {"auto_callbacks": "yes"},
        {"callback_attempts": 0},
        {"withdraw_mode": "maybe"},
        {"colour": "blue"},
    ],
)
def test_the_control_api_refuses_a_bad_behaviour(
    fake_warehouse: FakeWarehouse, changes: dict[str, Any]
) -> None:
    before = fake_warehouse.behaviour()

    answer = requests.post(
        f"{fake_warehouse.url}/_control/behaviour", json=changes, timeout=TIMEOUT
    )

    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_behaviour"
    assert fake_warehouse.behaviour() == before


def test_reset_forgets_everything_and_restores_the_start_up_behaviour(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    start_up = fake_warehouse.behaviour()
    control = ControlClient(fake_warehouse.url)
    request = fulfilment_request(callback_receiver.url)
    first = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, "k-1")
    control.configure(reject_skus=["Z"], auto_callbacks=False)

    control.reset()

    assert control.requests() == []
    assert control.shipments() == []
    assert control.behaviour() == start_up
    again = gateway.send(fake_warehouse.requests_url, WAREHOUSE_SECRET, request, "k-1")
    assert isinstance(again, Accepted)
    assert again != first


def test_callbacks_give_up_after_the_attempts_and_never_send_delivered(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    fake_warehouse.configure(callback_attempts=3)
    callback_receiver.fail_next(10, status=503)

    gateway.send(
        fake_warehouse.requests_url,
        WAREHOUSE_SECRET,
        fulfilment_request(callback_receiver.url),
        "k-1",
    )

    wait_until(lambda: fake_warehouse.shipments()[0]["state"] == "callback_failed")
    time.sleep(0.2)  # long enough for a delivered callback to show up, were one sent
    assert [c.event["event"] for c in callback_receiver.received] == ["shipped"] * 3
    assert [c["attempt"] for c in fake_warehouse.callbacks()] == [1, 2, 3]


def test_an_unreachable_callback_url_is_retried_and_recorded(
    gateway: HttpWarehouseGateway, fake_warehouse: FakeWarehouse
) -> None:
    fake_warehouse.configure(callback_attempts=2)
    callback_url = "http://127.0.0.1:9/warehouse-callbacks"  # discard port: refused

    gateway.send(
        fake_warehouse.requests_url, WAREHOUSE_SECRET, fulfilment_request(callback_url), "k-1"
    )

    wait_until(lambda: fake_warehouse.shipments()[0]["state"] == "callback_failed")
    attempts = fake_warehouse.callbacks()
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, None), (2, None)]
    assert all("Connection" in a["error"] for a in attempts)


def test_without_auto_callbacks_events_are_sent_on_demand_in_order(
    gateway: HttpWarehouseGateway,
    fake_warehouse: FakeWarehouse,
    callback_receiver: CallbackReceiver,
) -> None:
    control = ControlClient(fake_warehouse.url)
    control.configure(auto_callbacks=False)
    result = gateway.send(
        fake_warehouse.requests_url,
        WAREHOUSE_SECRET,
        fulfilment_request(callback_receiver.url),
        "k-1",
    )
    assert isinstance(result, Accepted)
    reference = result.shipment_reference
    time.sleep(0.2)
    assert callback_receiver.received == []

    with pytest.raises(RuntimeError, match="409"):
        control.send_event(reference, "delivered")
    shipped = control.send_event(reference, "shipped")
    delivered = control.send_event(reference, "delivered")

    assert (shipped["delivered"], delivered["delivered"]) == (True, True)
    assert [c.event["event"] for c in callback_receiver.received] == ["shipped", "delivered"]
    assert control.shipments()[0]["state"] == "delivered"
    with pytest.raises(RuntimeError, match="404"):
        control.send_event("shp_nope", "shipped")


def test_stop_cuts_a_hanging_request_short(callback_receiver: CallbackReceiver) -> None:
    fake = FakeWarehouse(secret=WAREHOUSE_SECRET, hang_seconds=30).start()
    fake.configure(mode="hang")
    gateway = HttpWarehouseGateway(timeout_connect=1.0, timeout_read=20.0)
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            gateway.send(
                fake.requests_url,
                WAREHOUSE_SECRET,
                fulfilment_request(callback_receiver.url),
                "k-1",
            )
        except BaseException as error:
            outcome.append(error)

    client = threading.Thread(target=send, daemon=True)
    client.start()
    wait_until(lambda: len(fake.requests()) == 1, what="the request to arrive")

    started = time.monotonic()
    fake.stop()
    client.join(5.0)

    assert time.monotonic() - started < 3.0
    assert not client.is_alive()
    assert [type(error) for error in outcome] == [WarehouseOutcomeUnknown]


def test_the_fake_only_listens_on_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeWarehouse(secret=WAREHOUSE_SECRET, host="192.0.2.1")


def test_the_command_serves_until_sigterm_and_exits_cleanly(
    gateway: HttpWarehouseGateway, callback_receiver: CallbackReceiver
) -> None:
    with running_fake_warehouse(
        args=["--reject-skus", "GONE,LOST", "--ship-after", "0", "--deliver-after", "0"]
    ) as fake:
        accepted = gateway.send(
            fake.requests_url, fake.secret, fulfilment_request(callback_receiver.url), "k-1"
        )
        rejected = gateway.send(
            fake.requests_url,
            fake.secret,
            fulfilment_request(callback_receiver.url, "A", "LOST"),
            "k-2",
        )
        callbacks = callback_receiver.wait_for(2)
        seen = fake.control.requests()
        exit_status = stop_process(fake.process)

    assert isinstance(accepted, Accepted)
    assert rejected == Rejected(reason="out of stock: LOST", code="out_of_stock")
    assert [c.event["event"] for c in callbacks] == ["shipped", "delivered"]
    assert [r["status"] for r in seen] == [201, 409]
    assert exit_status == 0


def test_the_command_refuses_a_non_loopback_host() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "fakes.warehouse", "--port", "0", "--host", "192.0.2.1"]
        + ["--secret", "s"],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=20,
        check=False,
    )

    assert finished.returncode == 2
    assert b"loopback" in finished.stderr


def test_control_requests_lists_bodies_as_json(
    fake_warehouse: FakeWarehouse, callback_receiver: CallbackReceiver
) -> None:
    request = fulfilment_request(callback_receiver.url)
    post(fake_warehouse.requests_url, encode_request(request), key="k-1")

    listed = requests.get(f"{fake_warehouse.url}/_control/requests", timeout=TIMEOUT).json()

    [seen] = listed["requests"]
    assert seen["body"] == json.loads(encode_request(request))
    assert {"idempotency_key", "signature_ok", "status", "duplicate"} <= set(seen)


# -- withdrawals -------------------------------------------------------------------------


def withdrawal(request_id: str, **changes: Any) -> bytes:
    body = json.loads(encode_withdrawal(request_id, "ORD-000001", "customer cancelled"))
    return json.dumps({**body, **changes}).encode()


@pytest.mark.parametrize(
    ("body", "key", "code"),
    [
        (withdrawal("fr-1"), None, "idempotency_key_missing"),
        (b"not json", "w-1", "invalid_request"),
        (withdrawal("fr-1", order_number=""), "w-1", "invalid_request"),
        (withdrawal("fr-1", reason=None), "w-1", "invalid_request"),
        (withdrawal("fr-2"), "w-1", "invalid_request"),
    ],
    ids=["no-key", "not-json", "no-order-number", "no-reason", "another-request-id"],
)
def test_a_withdrawal_it_cannot_read_gets_400_and_withdraws_nothing(
    fake_warehouse: FakeWarehouse, body: bytes, key: str | None, code: str
) -> None:
    answer = post(withdraw_url(fake_warehouse.requests_url, "fr-1"), body, key=key)

    assert answer.status_code == 400
    assert answer.json()["code"] == code
    later = post(
        fake_warehouse.requests_url,
        encode_request(fulfilment_request("http://127.0.0.1:9/")),
        key="k-1",
    )
    assert later.status_code == 201


def test_an_unsigned_withdrawal_gets_401_and_withdraws_nothing(
    fake_warehouse: FakeWarehouse, callback_receiver: CallbackReceiver
) -> None:
    fake_warehouse.configure(auto_callbacks=False)
    request = fulfilment_request(callback_receiver.url)
    post(fake_warehouse.requests_url, encode_request(request), key="k-1")

    answer = post(
        withdraw_url(fake_warehouse.requests_url, request.request_id),
        withdrawal(request.request_id),
        key="w-1",
        secret=None,
    )

    assert answer.status_code == 401
    assert answer.json()["reason"] == "unsigned"
    assert [s["state"] for s in fake_warehouse.shipments()] == ["accepted"]
    [seen] = ControlClient(fake_warehouse.url).withdrawals()
    assert (seen["signature_ok"], seen["status"], seen["result"]) == (False, 401, None)


def test_a_withdrawal_replayed_with_its_key_gets_the_stored_answer_marked_replayed(
    fake_warehouse: FakeWarehouse,
) -> None:
    url = withdraw_url(fake_warehouse.requests_url, "fr-1")

    first = post(url, withdrawal("fr-1"), key="w-1")
    again = post(url, withdrawal("fr-1"), key="w-1")

    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json() == again.json() == {"status": "withdrawn", "request_id": "fr-1"}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


def test_a_withdrawn_request_is_rejected_whatever_key_it_comes_back_with(
    fake_warehouse: FakeWarehouse, callback_receiver: CallbackReceiver
) -> None:
    fake_warehouse.configure(auto_callbacks=False)
    body = encode_request(fulfilment_request(callback_receiver.url))
    request_id = json.loads(body)["request_id"]
    assert post(fake_warehouse.requests_url, body, key="k-1").status_code == 201
    post(withdraw_url(fake_warehouse.requests_url, request_id), withdrawal(request_id), key="w-1")

    answers = [post(fake_warehouse.requests_url, body, key=key) for key in ("k-1", "k-2")]

    assert [a.status_code for a in answers] == [409, 409]
    assert [a.json()["code"] for a in answers] == ["withdrawn", "withdrawn"]
    assert len(fake_warehouse.shipments()) == 1


def test_a_withdrawn_shipment_cannot_be_sent_shipped_on_demand(
    fake_warehouse: FakeWarehouse, callback_receiver: CallbackReceiver
) -> None:
    control = ControlClient(fake_warehouse.url)
    control.configure(auto_callbacks=False)
    request = fulfilment_request(callback_receiver.url)
    accepted = post(fake_warehouse.requests_url, encode_request(request), key="k-1").json()
    post(
        withdraw_url(fake_warehouse.requests_url, request.request_id),
        withdrawal(request.request_id),
        key="w-1",
    )

    with pytest.raises(RuntimeError, match="409"):
        control.send_event(accepted["shipment_reference"], "shipped")

    assert callback_receiver.received == []
    assert control.shipments()[0]["state"] == "withdrawn"


def test_a_hanging_withdrawal_is_carried_out_and_recorded_as_unanswered(
    fake_warehouse: FakeWarehouse,
) -> None:
    fake_warehouse.configure(withdraw_mode="hang", hang_seconds=0.5)

    with pytest.raises(requests.ConnectionError):
        post(withdraw_url(fake_warehouse.requests_url, "fr-1"), withdrawal("fr-1"), key="w-1")

    [seen] = fake_warehouse.withdrawals()
    assert (seen["answered"], seen["status"], seen["result"]) == (False, 200, "withdrawn")


def test_the_withdraw_route_only_takes_post(fake_warehouse: FakeWarehouse) -> None:
    answer = requests.get(withdraw_url(fake_warehouse.requests_url, "fr-1"), timeout=TIMEOUT)

    assert answer.status_code == 405
    assert fake_warehouse.withdrawals() == []


def test_reset_forgets_withdrawals_and_withdrawn_requests(
    fake_warehouse: FakeWarehouse, callback_receiver: CallbackReceiver
) -> None:
    request = fulfilment_request(callback_receiver.url)
    post(
        withdraw_url(fake_warehouse.requests_url, request.request_id),
        withdrawal(request.request_id),
        key="w-1",
    )
    control = ControlClient(fake_warehouse.url)
    control.configure(withdraw_mode="refuse")

    control.reset()

    assert control.withdrawals() == []
    assert control.behaviour()["withdraw_mode"] == "allow"
    again = post(fake_warehouse.requests_url, encode_request(request), key="k-1")
    assert again.status_code == 201
