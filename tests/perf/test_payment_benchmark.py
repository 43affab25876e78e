"""The benchmark's --payment checkout: its own "answers at once" Stripe responder behind the
real gateway and the real API, the load client's paid checkout, and the correctness check
that every order of a paid run is authorized for its total."""

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from benchmarks.cli import run_environment
from benchmarks.correctness import correctness_check
from benchmarks.fake_cost import main as fake_cost_main
from benchmarks.floor import _Identities, _RowKeys
from benchmarks.load import UNPAID_CREATED, LoadSpec, run_load
from benchmarks.options import parse_args
from benchmarks.payload import PAYMENT_METHOD, checkout_body, payment_authorized
from benchmarks.payment_fake import PaymentFake, payment_fake
from payments.gateways.base import ProviderRequestRejected
from payments.gateways.stripe import StripeGateway
from payments.models import Payment
from tests.conftest import new_idempotency_key, stock_receive, token_client
from tests.factories import ProductFactory, UserFactory, WarehouseFactory


@pytest.fixture(scope="module")
def responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaymentFake]:
    with payment_fake("responder", tmp_path_factory.mktemp("responder") / "fake.log") as fake:
        yield fake


def test_responder_authorizes_for_the_gateway_and_replays_an_idempotency_key(responder):
    gateway = StripeGateway(api_key="sk_test_bench", api_base=responder.url, forbid_redirects=True)
    key = uuid.uuid4().hex

    def authorize(amount: int, idempotency_key: str) -> Any:
        return gateway.authorize(
            amount=amount,
            currency="eur",
            payment_method=PAYMENT_METHOD,
            idempotency_key=idempotency_key,
            metadata={"order_id": "order-1"},
        )

    first = authorize(4200, key)
    again = authorize(4200, key)
    other = authorize(4200, uuid.uuid4().hex)

    assert first.status == "requires_capture"
    assert (first.amount, first.amount_capturable, first.amount_received) == (4200, 4200, 0)
    assert first.metadata == {"order_id": "order-1"}
    assert again == first
    assert other.id != first.id
    with pytest.raises(ProviderRequestRejected) as refused:
        authorize(4300, key)
    assert refused.value.provider_code == "idempotency_error"
    assert gateway.retrieve(intent_id=first.id) == first


def test_payment_run_points_server_and_broker_at_its_own_processes(responder, tmp_path):
    args = parse_args(["--payment", "--database-url", "postgres://x@127.0.0.1/oms_bench_t"])
    args.source_root = tmp_path
    env = run_environment(args, responder)

    assert args.payment
    assert args.payment_fake == "responder"
    assert env["STRIPE_API_BASE"] == responder.url
    assert env["CELERY_BROKER_URL"].startswith("redis://127.0.0.1:")
    assert responder.broker is not None
    assert responder.broker.poll() is None
    assert responder.cpu_seconds() > 0


class _Orders(BaseHTTPRequestHandler):
    """Answers every checkout 201; the second and later ones without a payment."""

    protocol_version = "HTTP/1.1"
    bodies: list[dict[str, Any]] = []
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.bodies.append(body)
            paid = len(self.bodies) == 1
        payment = {"status": "authorized", "amount": 500} if paid else None
        answer = json.dumps({"id": str(uuid.uuid4()), "total": 500, "payment": payment}).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def orders_port() -> Iterator[int]:
    _Orders.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Orders)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("payment_method", [PAYMENT_METHOD, ""])
def test_paid_load_sends_a_payment_method_and_counts_an_unpaid_201_as_an_error(
    orders_port, payment_method
):
    spec = LoadSpec(
        port=orders_port,
        kind="checkout",
        duration=5.0,
        max_requests=3,
        clients=1,
        seed=1,
        tokens=["t"],
        skus=["A", "B", "C"],
        max_lines=3,
        orders=[],
        payment_method=payment_method,
    )

    result = run_load(spec)

    assert [body.get("payment_method", "") for body in _Orders.bodies] == [payment_method] * 3
    if payment_method:
        assert result.statuses == {"201": 1, UNPAID_CREATED: 2}
        assert result.error_samples
        assert result.error_samples[0].startswith(UNPAID_CREATED)
    else:
        assert result.statuses == {"201": 3}
    assert len(result.created) == 3


@pytest.mark.django_db
def test_paid_checkout_is_authorized_by_the_responder_and_checked_at_the_end(responder, settings):
    settings.STRIPE_API_BASE = responder.url
    settings.STRIPE_FORBID_REDIRECTS = True
    product = ProductFactory(price=1250)
    stock_receive(product, WarehouseFactory(), 100)
    client = token_client(UserFactory())

    def post(payment_method: str) -> Any:
        return client.post(
            "/api/v1/orders/",
            checkout_body([{"sku": product.sku, "quantity": 2}], "b@example.com", payment_method),
            format="json",
            HTTP_IDEMPOTENCY_KEY=new_idempotency_key(),
        )

    paid = post(PAYMENT_METHOD)

    assert paid.status_code == 201, paid.content
    assert payment_authorized(paid.json())
    payment = Payment.objects.get(order_id=paid.json()["id"])
    assert payment.provider_payment_id
    assert payment.provider_payment_id.startswith("pi_")
    assert correctness_check(1, paid=True).problems == []

    unpaid = post("")

    assert unpaid.status_code == 201
    assert not payment_authorized(unpaid.json())
    assert correctness_check(2, paid=True).problems == ["1 order(s) without a payment"]
    assert correctness_check(2).problems == []


def test_responder_is_stopped_after_its_run(tmp_path: Path):
    with payment_fake("responder", tmp_path / "fake.log") as fake:
        broker = fake.broker
    assert fake.process.poll() is not None
    assert broker is not None
    assert broker.poll() is not None


def test_floor_gives_each_replayed_payment_row_its_own_random_key():
    identities = _Identities()
    keys = _RowKeys(identities)
    keys.add("payments_payment", [7], foreign_key="payment_id")
    keys.add("payments_paymentoperation", [9])
    keys.add("orders_orderstatuschange", [3])
    identities.text("pi_captured", "pi_pgb")
    statements = [
        'INSERT INTO "payments_payment" ("created_at", "amount") VALUES '
        '(\'2026-01-01 00:00:00+00:00\'::timestamptz, 500) RETURNING "payments_payment"."id"',
        'INSERT INTO "payments_paymentoperation" ("created_at", "payment_id", "kind") VALUES '
        "('a, b'::text, 7, 'authorize') RETURNING \"payments_paymentoperation\".\"id\"",
        'UPDATE "payments_payment" SET "provider_payment_id" = \'pi_captured\' '
        'WHERE "payments_payment"."id" = 7',
        'SELECT 1 FROM "payments_paymentoperation" WHERE "payments_paymentoperation"."id" = 9 '
        'AND "payments_paymentoperation"."payment_id" = 7',
        "SELECT '{\"payment_id\": 7, \"amount\": 70}'::jsonb, 'order-status-change-3'",
    ]

    replayed = [identities.apply(keys.apply(sql)) for sql in statements]

    payment, operation = (
        keys.variables["payments_payment", 7],
        keys.variables["payments_paymentoperation", 9],
    )
    assert replayed[0].startswith(
        f'INSERT INTO "payments_payment" ("id", "created_at", "amount") VALUES ({payment}, '  # noqa: S608
    )
    assert f"VALUES ({operation}, 'a, b'::text, {payment}, 'authorize')" in replayed[1]
    assert replayed[2].endswith(f'"payments_payment"."id" = {payment}')
    assert "pi_captured" not in replayed[2]
    assert "pi_pgb:" in replayed[2]
    assert replayed[3].endswith(
        f'"payments_paymentoperation"."id" = {operation} '
        f'AND "payments_paymentoperation"."payment_id" = {payment}'
    )
    status_change = keys.variables["orders_orderstatuschange", 3]
    assert f'"payment_id": {payment}, "amount": 70' in replayed[4]
    assert f"order-status-change-{status_change}" in replayed[4]
    assert all(line.startswith("\\set oms_id") for line in identities.declarations)


def test_fake_cost_reports_the_responders_cpu_per_authorization(capsys):
    assert fake_cost_main(["--fake", "responder", "--batches", "5,5"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "responder (new connection), intents 1-5",
        "responder (new connection), intents 6-10",
    ]
    assert all("ms fake CPU per authorization" in line for line in lines)
