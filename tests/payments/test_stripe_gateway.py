"""The Stripe adapter, through the fault proxy, against the fake Stripe server."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe

from payments.gateways import (
    OutcomeUnknown,
    PaymentDeclined,
    ProviderRequestRejected,
    ProviderUnavailable,
    WebhookSignatureInvalid,
)
from payments.gateways.stripe import StripeGateway, verify_webhook
from tests.support.fake_stripe import new_order_id

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")

AMOUNT = 2500
THREE_D_SECURE_CARD = "4000002500003155"
DECLINED_AT_CHARGE_CARD = "4000000000000341"
WEBHOOK_SECRET = "whsec_test_oms"


@pytest.fixture
def make_gateway(fault_proxy, fake_stripe) -> Iterator:
    gateways: list[StripeGateway] = []

    def make(**options) -> StripeGateway:
        settings = {"connect_timeout": 1.0, "read_timeout": 3.0, **options}
        gateway = StripeGateway(api_key=fake_stripe.api_key, api_base=fault_proxy.url, **settings)
        gateways.append(gateway)
        return gateway

    yield make
    for gateway in gateways:
        gateway.close()


@pytest.fixture
def gateway(make_gateway) -> StripeGateway:
    return make_gateway()


def authorize(gateway, order_id, *, payment_method="pm_card_visa", key=None, amount=AMOUNT):
    return gateway.authorize(
        amount=amount,
        currency="EUR",
        payment_method=payment_method,
        idempotency_key=key or f"payment-{order_id}-authorize",
        metadata={"order_id": order_id, "order_number": f"N-{order_id}"},
    )


def test_authorize_holds_the_amount_until_capture(gateway, fault_proxy):
    order_id = new_order_id()

    intent = authorize(gateway, order_id, key=f"payment-{order_id}-authorize")

    assert intent.status == "requires_capture"
    assert (intent.amount, intent.amount_capturable, intent.amount_received) == (AMOUNT, AMOUNT, 0)
    assert intent.currency == "eur"
    assert intent.metadata == {"order_id": order_id, "order_number": f"N-{order_id}"}
    assert intent.decline_code is None
    (sent,) = fault_proxy.requests
    assert sent.idempotency_key == f"payment-{order_id}-authorize"
    assert sent.form["capture_method"] == "manual"
    assert sent.form["confirm"] == "true"


@pytest.mark.parametrize("card", ["pm_card_chargeCustomerFail", DECLINED_AT_CHARGE_CARD])
def test_declined_card_raises_payment_declined_with_code_and_intent(gateway, fake_stripe, card):
    order_id = new_order_id()
    payment_method = card if card.startswith("pm_") else fake_stripe.create_card(card)

    with pytest.raises(PaymentDeclined) as declined:
        authorize(gateway, order_id, payment_method=payment_method)

    (intent,) = fake_stripe.payment_intents(order_id=order_id)
    assert declined.value.decline_code == "card_declined"
    assert declined.value.intent_id == intent["id"]
    assert declined.value.code == "payment_declined"
    after = gateway.retrieve(intent_id=intent["id"])
    assert (after.status, after.decline_code) == ("requires_payment_method", "card_declined")


def test_three_d_secure_card_requires_action_with_client_secret(gateway, fake_stripe):
    payment_method = fake_stripe.create_card(THREE_D_SECURE_CARD)

    intent = authorize(gateway, new_order_id(), payment_method=payment_method)

    assert intent.status == "requires_action"
    assert intent.client_secret is not None
    assert intent.client_secret.startswith(f"{intent.id}_secret_")
    assert intent.amount_capturable == 0


def test_capture_takes_the_whole_authorized_amount(gateway):
    order_id = new_order_id()
    authorized = authorize(gateway, order_id)

    captured = gateway.capture(
        intent_id=authorized.id, idempotency_key=f"payment-{order_id}-capture"
    )

    assert captured.id == authorized.id
    assert captured.status == "succeeded"
    assert (captured.amount_capturable, captured.amount_received) == (0, AMOUNT)


def test_capturing_twice_with_a_new_key_is_rejected(gateway):
    order_id = new_order_id()
    authorized = authorize(gateway, order_id)
    gateway.capture(intent_id=authorized.id, idempotency_key=f"payment-{order_id}-capture-1")

    with pytest.raises(ProviderRequestRejected) as rejected:
        gateway.capture(intent_id=authorized.id, idempotency_key=f"payment-{order_id}-capture-2")

    assert rejected.value.status == 400


def test_authorize_asks_for_multicapture(gateway, fault_proxy):
    authorize(gateway, new_order_id())

    (sent,) = fault_proxy.requests
    assert sent.form["payment_method_options[card][request_multicapture]"] == "if_available"


def test_captures_that_are_not_final_add_up_and_the_final_one_releases_the_rest(gateway):
    order_id = new_order_id()
    intent = authorize(gateway, order_id)

    first = gateway.capture(intent_id=intent.id, amount=1000, idempotency_key="mc-1", final=False)
    second = gateway.capture(intent_id=intent.id, amount=700, idempotency_key="mc-2", final=False)
    last = gateway.capture(intent_id=intent.id, amount=300, idempotency_key="mc-3")

    assert (first.status, first.amount_received, first.amount_capturable) == (
        "requires_capture",
        1000,
        AMOUNT - 1000,
    )
    assert (second.status, second.amount_received, second.amount_capturable) == (
        "requires_capture",
        1700,
        AMOUNT - 1700,
    )
    # The final capture takes 300 and releases the 500 never captured.
    assert (last.status, last.amount_received, last.amount_capturable) == ("succeeded", 2000, 0)
    assert gateway.retrieve(intent_id=intent.id).amount_received == 2000


def test_a_capture_over_what_is_capturable_is_rejected_as_amount_too_large(gateway):
    intent = authorize(gateway, new_order_id())
    gateway.capture(intent_id=intent.id, amount=2000, idempotency_key="over-1", final=False)

    with pytest.raises(ProviderRequestRejected) as rejected:
        gateway.capture(intent_id=intent.id, amount=501, idempotency_key="over-2", final=False)

    assert (rejected.value.status, rejected.value.provider_code) == (400, "amount_too_large")
    assert gateway.retrieve(intent_id=intent.id).amount_capturable == 500


def test_a_capture_after_the_final_one_is_rejected_as_unexpected_state(gateway):
    intent = authorize(gateway, new_order_id())
    gateway.capture(intent_id=intent.id, amount=1000, idempotency_key="after-1")

    with pytest.raises(ProviderRequestRejected) as rejected:
        gateway.capture(intent_id=intent.id, amount=100, idempotency_key="after-2", final=False)

    assert rejected.value.provider_code == "payment_intent_unexpected_state"
    assert gateway.retrieve(intent_id=intent.id).amount_received == 1000


def test_a_cancel_after_a_partial_capture_releases_the_rest_and_succeeds(gateway):
    intent = authorize(gateway, new_order_id())
    gateway.capture(intent_id=intent.id, amount=900, idempotency_key="cancel-1", final=False)

    canceled = gateway.cancel(intent_id=intent.id, idempotency_key="cancel-2")

    assert (canceled.status, canceled.amount_received, canceled.amount_capturable) == (
        "succeeded",
        900,
        0,
    )


def test_a_capture_that_is_not_final_needs_multicapture(gateway, fake_stripe):
    created = fake_stripe.client().v1.payment_intents.create(
        params={
            "amount": AMOUNT,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
            "confirm": True,
        }
    )

    with pytest.raises(ProviderRequestRejected) as rejected:
        gateway.capture(intent_id=created.id, amount=100, idempotency_key="nomc", final=False)

    assert rejected.value.provider_code == "payment_intent_invalid_parameter"
    assert gateway.retrieve(intent_id=created.id).status == "requires_capture"


def test_partial_refunds_add_up_and_a_retried_refund_is_not_doubled(gateway, fake_stripe):
    order_id = new_order_id()
    intent = authorize(gateway, order_id)
    gateway.capture(intent_id=intent.id, idempotency_key=f"payment-{order_id}-capture")

    first = gateway.refund(intent_id=intent.id, amount=1000, idempotency_key="refund-1")
    second = gateway.refund(intent_id=intent.id, amount=500, idempotency_key="refund-2")
    retried = gateway.refund(intent_id=intent.id, amount=1000, idempotency_key="refund-1")

    assert (first.amount, first.status, first.intent_id) == (1000, "succeeded", intent.id)
    assert (second.amount, second.currency) == (500, "eur")
    assert retried == first
    assert first.id != second.id
    (stored,) = fake_stripe.payment_intents(order_id=order_id)
    assert stored["latest_charge"]["amount_refunded"] == 1500


def test_cancel_voids_an_authorization(gateway):
    order_id = new_order_id()
    intent = authorize(gateway, order_id)

    canceled = gateway.cancel(intent_id=intent.id, idempotency_key=f"payment-{order_id}-cancel")

    assert canceled.status == "canceled"
    assert canceled.amount_capturable == 0
    assert gateway.retrieve(intent_id=intent.id).status == "canceled"


def test_cancel_after_capture_is_rejected(gateway):
    order_id = new_order_id()
    intent = authorize(gateway, order_id)
    gateway.capture(intent_id=intent.id, idempotency_key=f"payment-{order_id}-capture")

    with pytest.raises(ProviderRequestRejected) as rejected:
        gateway.cancel(intent_id=intent.id, idempotency_key=f"payment-{order_id}-cancel")

    assert rejected.value.status == 400


def test_retrieve_of_an_unknown_intent_is_rejected(gateway):
    with pytest.raises(ProviderRequestRejected) as rejected:
        gateway.retrieve(intent_id="pi_doesnotexist")

    assert rejected.value.status == 404


def test_find_by_order_returns_that_orders_intents_and_falls_back_to_listing(gateway, fault_proxy):
    order_id, other_order_id = new_order_id(), new_order_id()
    first = authorize(gateway, order_id, key=f"{order_id}-1")
    second = authorize(gateway, order_id, key=f"{order_id}-2")
    authorize(gateway, other_order_id)

    found = gateway.find_by_order(order_id=order_id)
    found_again = gateway.find_by_order(order_id=order_id)

    assert {intent.id for intent in found} == {first.id, second.id}
    assert {intent.id for intent in found_again} == {first.id, second.id}
    searches = [r for r in fault_proxy.requests if r.path.startswith("/v1/payment_intents/search")]
    assert [r.status for r in searches] == [404]


def test_find_by_order_with_no_intents_is_empty(gateway):
    assert gateway.find_by_order(order_id=new_order_id()) == []


def test_provider_500_is_unavailable_and_a_retry_with_the_same_key_succeeds(
    gateway, fault_proxy, fake_stripe
):
    order_id = new_order_id()
    fault_proxy.set_fault("error", times=1, path=r"^/v1/payment_intents$")

    with pytest.raises(ProviderUnavailable) as unavailable:
        authorize(gateway, order_id)
    intent = authorize(gateway, order_id)

    assert unavailable.value.status == 500
    assert intent.status == "requires_capture"
    assert len(fake_stripe.payment_intents(order_id=order_id)) == 1


def test_refused_connection_is_unavailable(gateway, fault_proxy, fake_stripe):
    order_id = new_order_id()
    fault_proxy.set_fault("refuse")

    with pytest.raises(ProviderUnavailable):
        authorize(gateway, order_id)
    fault_proxy.clear()
    intent = authorize(gateway, order_id)

    assert intent.status == "requires_capture"
    assert len(fault_proxy.requests) == 1
    assert len(fake_stripe.payment_intents(order_id=order_id)) == 1


def test_read_timeout_is_outcome_unknown_and_a_same_key_retry_replays_the_result(
    make_gateway, fault_proxy, fake_stripe
):
    gateway = make_gateway(read_timeout=0.5)
    order_id = new_order_id()
    fault_proxy.set_fault("latency", seconds=1.5, times=1, path=r"^/v1/payment_intents$")

    started = time.monotonic()
    with pytest.raises(OutcomeUnknown):
        authorize(gateway, order_id)
    gave_up_after = time.monotonic() - started
    fault_proxy.wait_idle(timeout=5)
    intent = authorize(gateway, order_id)

    assert gave_up_after < 1.5
    (stored,) = fake_stripe.payment_intents(order_id=order_id)
    assert intent.id == stored["id"]
    assert [(r.forwarded, r.replayed) for r in fault_proxy.requests] == [
        (True, False),
        (False, True),
    ]


def test_retry_while_the_first_attempt_is_still_running_is_outcome_unknown(
    make_gateway, fault_proxy, fake_stripe
):
    gateway = make_gateway(read_timeout=0.3)
    order_id = new_order_id()
    fault_proxy.set_fault("latency", seconds=1.5, times=1, path=r"^/v1/payment_intents$")
    with pytest.raises(OutcomeUnknown):
        authorize(gateway, order_id)

    with pytest.raises(OutcomeUnknown) as in_flight:
        authorize(gateway, order_id)

    assert in_flight.value.status == 409
    fault_proxy.wait_idle(timeout=5)
    assert len(fake_stripe.payment_intents(order_id=order_id)) == 1


def test_request_dropped_before_the_provider_is_outcome_unknown(gateway, fault_proxy, fake_stripe):
    order_id = new_order_id()
    fault_proxy.set_fault("drop", times=1)

    with pytest.raises(OutcomeUnknown):
        authorize(gateway, order_id)
    intent = authorize(gateway, order_id)

    assert intent.status == "requires_capture"
    assert [r.forwarded for r in fault_proxy.requests] == [False, True]
    assert len(fake_stripe.payment_intents(order_id=order_id)) == 1


def test_lost_response_after_the_provider_charged_does_not_charge_twice(
    gateway, fault_proxy, fake_stripe
):
    order_id = new_order_id()
    fault_proxy.set_fault("drop_response", times=1, path=r"^/v1/payment_intents$")

    with pytest.raises(OutcomeUnknown):
        authorize(gateway, order_id)
    assert len(fake_stripe.payment_intents(order_id=order_id)) == 1
    intent = authorize(gateway, order_id)

    (stored,) = fake_stripe.payment_intents(order_id=order_id)
    assert (intent.id, intent.status) == (stored["id"], "requires_capture")
    assert fault_proxy.requests[-1].replayed
    assert [i.id for i in gateway.find_by_order(order_id=order_id)] == [stored["id"]]


def test_lost_capture_response_is_outcome_unknown_and_the_retry_captures_once(gateway, fault_proxy):
    order_id = new_order_id()
    intent = authorize(gateway, order_id)
    fault_proxy.set_fault("drop_response", times=1, path=r"/capture$")

    with pytest.raises(OutcomeUnknown):
        gateway.capture(intent_id=intent.id, idempotency_key=f"payment-{order_id}-capture")
    captured = gateway.capture(intent_id=intent.id, idempotency_key=f"payment-{order_id}-capture")

    assert (captured.status, captured.amount_received) == ("succeeded", AMOUNT)
    assert fault_proxy.requests[-1].replayed


def test_forbid_redirects_asks_for_no_redirect_methods(make_gateway, fault_proxy):
    gateway = make_gateway(forbid_redirects=True)

    # localstripe refuses the parameter that real Stripe needs here.
    with pytest.raises(ProviderRequestRejected) as rejected:
        authorize(gateway, new_order_id())

    assert rejected.value.status == 400
    sent = fault_proxy.requests[-1].form
    assert sent["automatic_payment_methods[allow_redirects]"] == "never"
    assert sent["automatic_payment_methods[enabled]"] == "true"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"amount": 0}, "positive"),
        ({"key": "k" * 256}, "idempotency key"),
    ],
)
def test_authorize_checks_its_arguments_before_calling_out(
    gateway, fault_proxy, arguments, message
):
    with pytest.raises(ValueError, match=message):
        authorize(gateway, new_order_id(), **arguments)

    assert fault_proxy.requests == []


def signed(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


EVENT = json.dumps({"id": "evt_1", "object": "event", "type": "payment_intent.succeeded"})


def test_webhook_with_a_valid_signature_gives_the_event():
    event = verify_webhook(EVENT.encode(), signed(EVENT), WEBHOOK_SECRET)

    assert event["type"] == "payment_intent.succeeded"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "unsigned"),
        ("", "unsigned"),
        ("t={now}", "unsigned"),
        ("v1=abc", "malformed"),
        ("t=soon,v1=abc", "malformed"),
    ],
)
def test_webhook_without_a_usable_signature_is_refused(header, reason):
    # The timestamp is filled in when the test runs: test ids stay the same everywhere.
    if header is not None:
        header = header.replace("{now}", str(int(time.time())))
    with pytest.raises(WebhookSignatureInvalid) as refused:
        verify_webhook(EVENT, header, WEBHOOK_SECRET)

    assert refused.value.reason == reason


def test_webhook_signed_with_another_secret_is_forged():
    with pytest.raises(WebhookSignatureInvalid) as refused:
        verify_webhook(EVENT, signed(EVENT, secret="whsec_someone_else"), WEBHOOK_SECRET)

    assert refused.value.reason == "forged"


def test_webhook_with_a_tampered_payload_is_forged():
    tampered = EVENT.replace("succeeded", "canceled")

    with pytest.raises(WebhookSignatureInvalid) as refused:
        verify_webhook(tampered, signed(EVENT), WEBHOOK_SECRET)

    assert refused.value.reason == "forged"


def test_webhook_signed_before_the_tolerance_is_stale():
    old = int(time.time()) - 301

    with pytest.raises(WebhookSignatureInvalid) as refused:
        verify_webhook(EVENT, signed(EVENT, timestamp=old), WEBHOOK_SECRET, tolerance=300)

    assert refused.value.reason == "stale"


class _ReceiverServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.deliveries: list[tuple[bytes, str | None]] = []
        super().__init__(("127.0.0.1", 0), _Receiver)


class _Receiver(BaseHTTPRequestHandler):
    server: _ReceiverServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.deliveries.append((body, self.headers.get("Stripe-Signature")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args) -> None:
        return None


@pytest.fixture
def webhook_deliveries(fake_stripe) -> Iterator[list[tuple[bytes, str | None]]]:
    """What the fake server delivers to a loopback endpoint; unregistered after."""
    server = _ReceiverServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    endpoint_id = f"test-{server.server_port}"
    fake_stripe.register_webhook(
        url=f"http://127.0.0.1:{server.server_port}/",
        secret=WEBHOOK_SECRET,
        events=["payment_intent.succeeded"],
        endpoint_id=endpoint_id,
    )
    try:
        yield server.deliveries
    finally:
        # localstripe cannot delete an endpoint: point it at an event that never happens.
        fake_stripe.register_webhook(
            url="http://127.0.0.1:9/", secret="unused", events=["never"], endpoint_id=endpoint_id
        )
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_fake_server_webhooks_verify_with_the_registered_secret(gateway, webhook_deliveries):
    order_id = new_order_id()
    intent = authorize(gateway, order_id)

    gateway.capture(intent_id=intent.id, idempotency_key=f"payment-{order_id}-capture")
    deadline = time.monotonic() + 10
    events = []
    while time.monotonic() < deadline and not events:
        events = [
            verify_webhook(body, signature, WEBHOOK_SECRET)
            for body, signature in list(webhook_deliveries)
            if intent.id in body.decode()
        ]
        time.sleep(0.1)

    (event,) = events
    assert event["type"] == "payment_intent.succeeded"
    assert event["data"]["object"]["id"] == intent.id
    assert event["data"]["object"]["metadata"]["order_id"] == order_id
