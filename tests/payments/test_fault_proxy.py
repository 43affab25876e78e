"""The test utilities themselves: the fake Stripe process and the fault-injecting proxy."""

import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.fake_stripe import (
    FakeStripeServer,
    new_order_id,
    running_fake_stripe,
    stop_process,
)
from tests.support.fault_proxy import FaultProxy, connect_refused

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")

TIMEOUT = (1.0, 5.0)


def create_intent(
    proxy: FaultProxy, server: FakeStripeServer, order_id: str, *, key: str | None, amount=1500
) -> requests.Response:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    if key:
        headers["Idempotency-Key"] = key
    return requests.post(
        f"{proxy.url}/v1/payment_intents",
        data={
            "amount": amount,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
            "confirm": "true",
            "metadata[order_id]": order_id,
        },
        headers=headers,
        timeout=TIMEOUT,
    )


def list_intents(proxy: FaultProxy, server: FakeStripeServer) -> requests.Response:
    return requests.get(
        f"{proxy.url}/v1/payment_intents?limit=1",
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=TIMEOUT,
    )


def test_fake_server_listens_on_loopback_only_and_answers(fake_stripe):
    parts = urlsplit(fake_stripe.url)

    assert parts.hostname == "127.0.0.1"
    assert fake_stripe.client().v1.payment_intents.list(params={"limit": 1}).object == "list"


def test_each_fake_server_starts_empty_and_exits_cleanly_on_sigterm(fake_stripe):
    order_id = new_order_id()
    fake_stripe.client().v1.payment_intents.create(
        params={"amount": 100, "currency": "eur", "metadata": {"order_id": order_id}}
    )

    with running_fake_stripe() as other:
        assert other.url != fake_stripe.url
        assert other.payment_intents() == []
        returncode = stop_process(other.process)

    assert returncode == 0
    assert connect_refused(other.url)
    assert len(fake_stripe.payment_intents(order_id=order_id)) == 1


def test_requests_are_forwarded_and_recorded(fault_proxy, fake_stripe):
    response = list_intents(fault_proxy, fake_stripe)

    assert response.status_code == 200
    assert response.headers["Connection"] == "close"
    (seen,) = fault_proxy.requests
    assert (seen.method, seen.path) == ("GET", "/v1/payment_intents?limit=1")
    assert seen.headers["Authorization"] == f"Bearer {fake_stripe.api_key}"
    assert seen.forwarded
    assert not seen.replayed
    assert (seen.fault, seen.status, seen.upstream_status) == (None, 200, 200)


def test_repeated_idempotency_key_is_answered_from_store_without_forwarding(
    fault_proxy, fake_stripe
):
    order_id = new_order_id()

    first = create_intent(fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth")
    second = create_intent(fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth")

    assert first.status_code == second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert [(r.forwarded, r.replayed) for r in fault_proxy.requests] == [
        (True, False),
        (False, True),
    ]
    assert fault_proxy.requests[1].idempotency_key == f"{order_id}-auth"
    assert fault_proxy.requests[1].form["metadata[order_id]"] == order_id
    assert len(fake_stripe.payment_intents(order_id=order_id)) == 1


def test_requests_without_a_key_are_not_deduplicated(fault_proxy, fake_stripe):
    order_id = new_order_id()

    create_intent(fault_proxy, fake_stripe, order_id, key=None)
    create_intent(fault_proxy, fake_stripe, order_id, key=None)

    assert len(fake_stripe.payment_intents(order_id=order_id)) == 2


def test_same_key_with_other_parameters_is_refused(fault_proxy, fake_stripe):
    order_id = new_order_id()
    create_intent(fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth")

    response = create_intent(
        fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth", amount=9999
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "idempotency_error"
    assert not fault_proxy.requests[-1].forwarded
    assert len(fake_stripe.payment_intents(order_id=order_id)) == 1


def test_same_key_while_the_first_request_is_in_flight_gets_409(fault_proxy, fake_stripe):
    order_id = new_order_id()
    fault_proxy.set_fault("latency", seconds=1.0, times=1)
    first = []
    thread = threading.Thread(
        target=lambda: first.append(
            create_intent(fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth")
        )
    )
    thread.start()
    time.sleep(0.3)

    second = create_intent(fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth")
    thread.join(timeout=10)

    assert second.status_code == 409
    assert second.json()["error"]["type"] == "idempotency_error"
    assert first[0].status_code == 200
    assert len(fake_stripe.payment_intents(order_id=order_id)) == 1


def test_error_fault_answers_a_stripe_style_500_for_the_next_n_matching_requests(
    fault_proxy, fake_stripe
):
    fault_proxy.set_fault("error", times=1, path=r"^/v1/payment_intents\b", method="POST")

    unaffected = list_intents(fault_proxy, fake_stripe)
    failed = create_intent(fault_proxy, fake_stripe, new_order_id(), key=None)
    recovered = create_intent(fault_proxy, fake_stripe, new_order_id(), key=None)

    assert unaffected.status_code == 200
    assert failed.status_code == 500
    assert failed.json()["error"]["type"] == "api_error"
    assert recovered.status_code == 200
    assert [(r.fault, r.forwarded) for r in fault_proxy.requests] == [
        (None, True),
        ("error", False),
        (None, True),
    ]


def test_injected_errors_are_not_stored_under_the_key(fault_proxy, fake_stripe):
    order_id = new_order_id()
    fault_proxy.set_fault("error", times=1, status=503)

    failed = create_intent(fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth")
    retried = create_intent(fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth")

    assert failed.status_code == 503
    assert retried.status_code == 200
    assert retried.json()["metadata"]["order_id"] == order_id


def test_refuse_fault_closes_the_port_until_cleared(fault_proxy, fake_stripe):
    url = fault_proxy.url
    fault_proxy.set_fault("refuse")

    assert connect_refused(url)
    with pytest.raises(requests.ConnectionError):
        list_intents(fault_proxy, fake_stripe)

    fault_proxy.clear()

    assert fault_proxy.url == url
    assert list_intents(fault_proxy, fake_stripe).status_code == 200
    assert len(fault_proxy.requests) == 1


def test_refuse_fault_takes_no_request_filter(fault_proxy):
    with pytest.raises(ValueError, match="whole port"):
        fault_proxy.set_fault("refuse", times=1)


def test_drop_fault_closes_the_connection_without_forwarding(fault_proxy, fake_stripe):
    order_id = new_order_id()
    fault_proxy.set_fault("drop", times=1)

    with pytest.raises(requests.ConnectionError):
        create_intent(fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth")

    (seen,) = fault_proxy.requests
    assert (seen.fault, seen.forwarded, seen.status) == ("drop", False, None)
    assert fake_stripe.payment_intents(order_id=order_id) == []


def test_drop_response_fault_lets_the_provider_act_then_drops_the_answer(fault_proxy, fake_stripe):
    order_id = new_order_id()
    fault_proxy.set_fault("drop_response", times=1)

    with pytest.raises(requests.ConnectionError):
        create_intent(fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth")
    retried = create_intent(fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth")

    (intent,) = fake_stripe.payment_intents(order_id=order_id)
    assert retried.json()["id"] == intent["id"]
    dropped, replayed = fault_proxy.requests
    assert (dropped.forwarded, dropped.status, dropped.upstream_status) == (True, None, 200)
    assert (replayed.forwarded, replayed.replayed, replayed.status) == (False, True, 200)


def test_latency_fault_delays_the_answer(fault_proxy, fake_stripe):
    fault_proxy.set_fault("latency", seconds=0.5)

    started = time.monotonic()
    response = list_intents(fault_proxy, fake_stripe)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.5
    assert fault_proxy.requests[0].fault == "latency"


def test_reset_forgets_requests_and_stored_responses(fault_proxy, fake_stripe):
    order_id = new_order_id()
    create_intent(fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth")

    fault_proxy.reset()
    create_intent(fault_proxy, fake_stripe, order_id, key=f"{order_id}-auth")

    assert len(fault_proxy.requests) == 1
    assert len(fake_stripe.payment_intents(order_id=order_id)) == 2


def test_stopped_proxy_refuses_connections(fake_stripe):
    with FaultProxy(upstream=fake_stripe.url) as proxy:
        assert list_intents(proxy, fake_stripe).status_code == 200

    assert connect_refused(proxy.url)


def test_unreachable_upstream_answers_502_and_is_not_forwarded(fake_stripe):
    with running_fake_stripe() as doomed:
        upstream = doomed.url
    with FaultProxy(upstream=upstream, upstream_timeout=1.0) as proxy:
        response = list_intents(proxy, fake_stripe)

    assert response.status_code == 502
    assert not proxy.requests[0].forwarded
