"""A paid checkout written in one statement (flows.place.order_checkout_written): the
key's claim, the order and its payment's checkpoint commit together before the provider
is called, and the checkout leaves the rows, audit, events and outbox messages the
general path (order_checkout under a claimed key) leaves."""

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, connections
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.actors import Actor
from core.breakers import circuit_breakers_reset
from core.errors import ConcurrentUpdate
from core.idempotency import IdempotencyContext, StatementClaim, idempotent_execute
from core.models import IdempotencyKey, OutboxMessage
from events.models import EventSubscription
from events.topic_cache import topics_with_subscribers_forget
from flows import pay as pay_module
from flows.api.actions import order_body
from flows.api.serializers import OrderOutputSerializer
from flows.place import OrderLineRequest, order_checkout, order_checkout_written
from flows.reconcile import payments_reconcile
from inventory.models import Product, Reservation, StockMovement
from orders.models import Order, OrderEvent, OrderLine, OrderStatusChange
from payments.models import Payment, PaymentOperation
from tests.conftest import (
    assert_stock_consistent,
    new_idempotency_key,
    order_payload,
    run_concurrently,
)
from tests.payments.conftest import (
    AUTHORIZE_PATH,
    GOOD_CARD,
    WEBHOOK_SECRET,
    ProviderProxy,
    assert_provider_consistent,
)
from tests.support.fake_stripe import FakeStripeServer

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fault_proxy")

PATH = "/api/v1/orders/"
WRITE_CALL = "SELECT oms_checkout_write("
# Values that differ between two checkouts of the same cart: ids, numbers and times.
VARYING = frozenset(
    {
        "id",
        "number",
        "order_number",
        "order_id",
        "payment_id",
        "event_id",
        "status_change_id",
        "created_at",
        "updated_at",
        "occurred_at",
        "reservation_expires_at",
    }
)


def without_varying(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_varying(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [without_varying(item) for item in value]
    return value


def render(order: Any) -> dict[str, Any]:
    return OrderOutputSerializer().to_representation(order)


def paid_checkout(customer: User, product: Product, *, key: str, one_statement: bool) -> Any:
    """The API's paid checkout (flows.api.views), with or without its single-statement
    form."""
    actor = Actor(user=customer, request_id="req-paid")
    arguments: dict[str, Any] = {
        "customer": customer,
        "email": "buyer@example.com",
        "shipping_address": dict(order_payload([])["shipping_address"]),
        "lines": [OrderLineRequest(product.sku, 2)],
        "actor": actor,
        "payment_method": GOOD_CARD,
    }

    def general(context: IdempotencyContext) -> tuple[int, Any]:
        order_id = order_checkout(
            **arguments,
            resume_order_id=context.resource_id or None,
            on_created=lambda order: context.checkpoint(str(order.pk)),
        )
        return 201, order_body(order_id, actor)

    def written(claim: StatementClaim) -> tuple[int, Any] | None:
        body = order_checkout_written(**arguments, claim=claim, render=render)
        return None if body is None else (201, body)

    payload = order_payload([(product.sku, 2)]) | {"payment_method": GOOD_CARD}
    return idempotent_execute(
        user=customer,
        key=key,
        method="POST",
        path=PATH,
        payload=payload,
        operation=general,
        atomic=False,
        claimed_by_statement=written if one_statement else None,
    )


def rows_of(order_id: Any, *, outbox_after: int, outbox_upto: int | None = None) -> dict[str, Any]:
    """Everything the checkout wrote for the order, without ids, numbers and times."""
    order = Order.objects.get(pk=order_id)
    payment = Payment.objects.get(order=order)
    reservations = list(Reservation.objects.filter(order_line__order=order).order_by("pk"))
    key = IdempotencyKey.objects.get(resource_id=str(order.pk))
    return {
        "order": model_to_dict(order, exclude=["id", "number", "reservation_expires_at"]),
        "lines": [
            model_to_dict(line, exclude=["id", "order"])
            for line in OrderLine.objects.filter(order=order).order_by("pk")
        ],
        "audit": [
            model_to_dict(change, exclude=["id", "order", "created_at"])
            for change in OrderStatusChange.objects.filter(order=order).order_by("pk")
        ],
        "events": [
            (event.sequence, event.type, event.api_version, without_varying(event.data))
            for event in OrderEvent.objects.filter(order=order).order_by("sequence")
        ],
        "outbox": [
            (m.topic, m.handler, m.queue, m.status, m.request_id, without_varying(m.payload))
            for m in OutboxMessage.objects.filter(pk__gt=outbox_after).order_by("pk")
            if outbox_upto is None or m.pk <= outbox_upto
        ],
        "payment": model_to_dict(payment, exclude=["id", "order", "provider_payment_id"]),
        "payment_at_provider": bool(payment.provider_payment_id),
        "operations": [
            (
                model_to_dict(operation, exclude=["id", "payment", "provider_object_id"]),
                operation.provider_object_id == payment.provider_payment_id,
            )
            for operation in PaymentOperation.objects.filter(payment=payment)
        ],
        "reservations": [(r.stock_item_id, r.quantity, r.status) for r in reservations],
        "ledger": [
            (m.stock_item_id, m.kind, m.reserved_delta, m.actor_id, m.request_id)
            for m in StockMovement.objects.filter(reservation__in=reservations).order_by("pk")
        ],
        "key": (
            key.status,
            key.locked_at,
            key.response_status,
            without_varying(key.response_body),
        ),
    }


def last_outbox_id() -> int:
    last = OutboxMessage.objects.order_by("-pk").values_list("pk", flat=True).first()
    return last or 0


@pytest.mark.django_db
def test_a_paid_checkout_in_one_statement_writes_what_the_general_path_writes(
    provider, stocked_product, customer
):
    # Given a stocked product and the fake provider
    product = stocked_product(quantities={"main": 20}, price=2500, currency="EUR")

    # When the same paid checkout runs through the general path, then the statement
    outbox_before_general = last_outbox_id()
    general = paid_checkout(customer, product, key=new_idempotency_key(), one_statement=False)
    outbox_before_written = last_outbox_id()
    with CaptureQueriesContext(connection) as captured:
        written = paid_checkout(customer, product, key=new_idempotency_key(), one_statement=True)

    # Then the statement ran once, and both confirmed the order and answered alike
    assert len([q for q in captured.captured_queries if q["sql"].startswith(WRITE_CALL)]) == 1
    assert general.status == written.status == 201
    assert written.body["status"] == "confirmed"
    assert without_varying(written.body) == without_varying(general.body)
    # ... the rendered body is the order as stored (nothing was read back to make it)
    assert written.body == render(Order.objects.get(pk=written.body["id"]))
    assert IdempotencyKey.objects.get(resource_id=written.body["id"]).response_body == (
        written.body
    )
    # ... and wrote the same rows, audit rows, events and outbox messages
    written_rows = rows_of(written.body["id"], outbox_after=outbox_before_written)
    general_rows = rows_of(
        general.body["id"], outbox_after=outbox_before_general, outbox_upto=outbox_before_written
    )
    assert written_rows["outbox"], "the confirmation routes the order through the outbox"
    assert written_rows == general_rows
    # ... and sent the provider one authorization, under the operation's own key
    (operation,) = PaymentOperation.objects.filter(payment__order_id=written.body["id"])
    authorizations = [
        r
        for r in provider.sent(AUTHORIZE_PATH)
        if r.form["metadata[order_id]"] == written.body["id"]
    ]
    assert [r.idempotency_key for r in authorizations] == [operation.idempotency_key]
    assert_stock_consistent()


class CheckpointWitness(ProviderProxy):
    """The provider as the service sees it, looking into the database (its own
    connection: only committed rows) each time an authorization arrives, before the
    provider is asked."""

    def __init__(self, upstream: str, **options: Any) -> None:
        super().__init__(upstream, **options)
        self.seen: list[dict[str, Any]] = []
        self._seen_lock = threading.Lock()

    def _forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Any:
        if method == "POST" and re.search(AUTHORIZE_PATH, path):
            key = {name.lower(): value for name, value in headers}["idempotency-key"]
            try:
                seen = committed_checkpoint(int(key.rsplit("-", 1)[1]))
            finally:
                connections.close_all()
            with self._seen_lock:
                self.seen.append(seen)
        return super()._forward(method, path, headers, body)


def committed_checkpoint(operation_id: int) -> dict[str, Any]:
    operation = PaymentOperation.objects.select_related("payment__order").get(pk=operation_id)
    payment = operation.payment
    key = IdempotencyKey.objects.get(resource_id=str(payment.order_id))
    return {
        "operation": (operation.kind, operation.status, operation.attempts, operation.amount),
        "payment": (payment.status, payment.amount, payment.payment_method),
        "order": (str(payment.order_id), payment.order.status),
        "key": (key.status, key.locked_at is not None),
    }


@pytest.fixture
def witness(fake_stripe: FakeStripeServer, settings: Any) -> Iterator[CheckpointWitness]:
    circuit_breakers_reset()
    with CheckpointWitness(upstream=fake_stripe.url) as proxy:
        settings.STRIPE_API_BASE = proxy.url
        settings.STRIPE_API_KEY = fake_stripe.api_key
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_CONNECT_TIMEOUT_SECONDS = 1.0
        settings.STRIPE_READ_TIMEOUT_SECONDS = 5.0
        settings.PAYMENT_BREAKER_FAIL_MAX = 1000
        yield proxy
    circuit_breakers_reset()


@pytest.mark.django_db(transaction=True)
def test_the_order_payment_and_checkpoint_are_committed_before_the_provider_is_called(
    witness, checkout, customer_client, fake_stripe
):
    # When a customer checks out with a card
    with CaptureQueriesContext(connection) as captured:
        response = checkout(customer_client, GOOD_CARD, quantity=2)

    # Then, when the authorization reached the provider, the order (pending payment), its
    # pending payment and authorize operation (the attempt counted) and the key's claim
    # checkpointed with the order were already committed, by the one statement
    assert response.status_code == 201, response.json()
    order_id, total = response.json()["id"], response.json()["total"]
    assert witness.seen == [
        {
            "operation": ("authorize", "pending", 1, total),
            "payment": ("pending", total, GOOD_CARD),
            "order": (order_id, "pending_payment"),
            "key": ("in_progress", True),
        }
    ]
    sql = [query["sql"].strip() for query in captured.captured_queries]
    assert len([s for s in sql if s.startswith(WRITE_CALL)]) == 1
    before_call = sql[: next(i for i, s in enumerate(sql) if s.startswith(WRITE_CALL)) + 1]
    # (the API key's first use records itself; nothing else is written before the call)
    writes = [s for s in before_call if s.startswith(("INSERT", "UPDATE", "BEGIN"))]
    assert [s for s in writes if "access_apikey" not in s] == []
    # ... and afterwards the order is confirmed, once, at the provider too
    assert response.json()["status"] == "confirmed"
    totals = assert_provider_consistent(fake_stripe, order_id)
    assert (totals["intents"], totals["authorized"]) == (1, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("reached_provider", [False, True], ids=["before-send", "after-send"])
def test_a_paid_checkout_whose_process_died_after_the_statement_is_finished_once(
    provider, checkout, customer_client, fake_stripe, monkeypatch, reached_provider
):
    # Given a paid checkout whose process died after its statement committed (before, or
    # after, the authorization reached the provider)
    send = pay_module.operation_send

    def die(operation: Any, call: Any, **options: Any) -> Any:
        if reached_provider:
            send(operation, call, **options)
        raise RuntimeError("worker killed")

    monkeypatch.setattr(pay_module, "operation_send", die)
    died = checkout(customer_client, GOOD_CARD, key="died-1")
    monkeypatch.undo()
    assert died.status_code == 500, died.json()

    # Then the order, its payment and the pending operation are there, left for the
    # reconciler, and the key can resume the order
    order = Order.objects.get()
    assert order.status == "pending_payment"
    (operation,) = PaymentOperation.objects.filter(payment__order=order)
    assert (operation.status, operation.attempts) == ("pending", 1)
    key = IdempotencyKey.objects.get(key="died-1")
    assert (key.status, key.resource_id) == ("in_progress", str(order.pk))

    # When the reconciler runs, and the customer retries with the same key
    report = payments_reconcile()
    retried = checkout(customer_client, GOOD_CARD, key="died-1")

    # Then there is one order, confirmed with one authorization, sent only under its
    # operations' keys (the reconciler failed an attempt that never reached the
    # provider, and the retry made the next; it confirmed one that did)
    assert report.errors == []
    assert Order.objects.count() == 1
    assert retried.status_code == 201, retried.json()
    assert (retried.json()["id"], retried.json()["status"]) == (str(order.pk), "confirmed")
    totals = assert_provider_consistent(fake_stripe, order.pk)
    assert totals["authorized"] == 1
    assert {r.idempotency_key for r in provider.sent(AUTHORIZE_PATH)} <= {
        op.idempotency_key for op in PaymentOperation.objects.filter(payment__order=order)
    }


@pytest.mark.django_db(transaction=True)
def test_concurrent_paid_checkouts_with_one_key_place_one_order_and_authorize_once(
    provider, checkout, customer_client, fake_stripe
):
    # Given the same paid checkout sent four times at once with one Idempotency-Key
    responses = run_concurrently(
        [lambda: checkout(customer_client, GOOD_CARD, key="same-paid-key") for _ in range(4)]
    )

    # Then one order exists, authorized once; every answer is that order (placed, or
    # replayed) or "still in progress" while the first ran
    assert not [r for r in responses if isinstance(r, BaseException)], responses
    order = Order.objects.get()
    assert order.status == "confirmed"
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}
    for response in responses:
        if response.status_code == 201:
            assert response.json()["id"] == str(order.pk)
        else:
            assert response.json()["code"] == "request_in_progress"
    totals = assert_provider_consistent(fake_stripe, order.pk)
    assert (totals["intents"], totals["authorized"]) == (1, 1)
    assert len(provider.sent(AUTHORIZE_PATH)) == 1
    assert_stock_consistent()


@pytest.fixture
def subscribed_to_every_event() -> Iterator[None]:
    """A webhook subscription to every order event: each event writes its delivery to
    the outbox (events.handlers)."""
    topics_with_subscribers_forget()
    EventSubscription.objects.create(
        name="all-events", url="http://127.0.0.1:9/hook", secret="secret-all", topics=["*"]
    )
    yield
    topics_with_subscribers_forget()


@pytest.mark.django_db
def test_the_confirmation_in_one_statement_writes_what_the_orm_writes_with_event_deliveries(
    provider, stocked_product, customer, subscribed_to_every_event
):
    # Given a stocked product, the fake provider and a subscription to every event
    product = stocked_product(quantities={"main": 20}, price=1250, currency="EUR")

    # When the same paid checkout runs through the general path, then the statement
    outbox_before_general = last_outbox_id()
    general = paid_checkout(customer, product, key=new_idempotency_key(), one_statement=False)
    outbox_before_written = last_outbox_id()
    with CaptureQueriesContext(connection) as captured:
        written = paid_checkout(customer, product, key=new_idempotency_key(), one_statement=True)

    # Then the outcome was written in one statement, with the key's completion (no
    # statement of its own), and no backorder check was made
    sql = [query["sql"].strip() for query in captured.captured_queries]
    assert len([s for s in sql if s.startswith(OUTCOME_WRITE)]) == 1
    assert not [s for s in sql if s.startswith('UPDATE "core_idempotencykey"')]
    assert not [s for s in sql if "inventory_backorderclaim" in s]
    # ... and it left the rows, audit rows, events (with their sequences) and outbox
    # messages (event deliveries, routing) the ORM leaves, and the same response
    written_rows = rows_of(written.body["id"], outbox_after=outbox_before_written)
    general_rows = rows_of(
        general.body["id"], outbox_after=outbox_before_general, outbox_upto=outbox_before_written
    )
    assert [event[:2] for event in written_rows["events"]] == [
        (1, "order.created"),
        (2, "payment.authorized"),
        (3, "order.confirmed"),
    ]
    topics = [message[0] for message in written_rows["outbox"]]
    assert "order_event.payment.authorized" in topics
    assert "order_event.order.confirmed" in topics
    assert "order.confirmed" in topics
    assert written_rows == general_rows
    assert without_varying(written.body) == without_varying(general.body)
    assert written.body == render(Order.objects.get(pk=written.body["id"]))
    # ... the routing message names the audit row, as the ORM's does
    change = OrderStatusChange.objects.get(order_id=written.body["id"], to_status="confirmed")
    routing = OutboxMessage.objects.filter(pk__gt=outbox_before_written, topic="order.confirmed")
    assert {m.payload["status_change_id"] for m in routing} == {change.pk}
    assert all(m.dedup_key.endswith(f"order-status-change-{change.pk}") for m in routing)


@pytest.mark.django_db(transaction=True)
def test_a_key_that_cannot_complete_with_the_outcome_does_not_cost_the_authorization(
    provider, stocked_product, customer, fake_stripe
):
    # Given a database that refuses to complete this customer's keys (a trigger)
    product = stocked_product(quantities={"main": 5}, price=900, currency="EUR")
    with connection.cursor() as cursor:
        cursor.execute(REFUSE_KEY_COMPLETION_SQL, [customer.pk])
    try:
        # When a paid checkout is placed
        with pytest.raises(DatabaseError, match="key completion refused"):
            paid_checkout(customer, product, key="refused-key", one_statement=True)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(REFUSE_KEY_COMPLETION_DROP_SQL)

    # Then the statement with the key rolled back, and the authorization was recorded
    # the general way: one order, confirmed, with one authorization at the provider
    order = Order.objects.get()
    assert order.status == "confirmed"
    payment = Payment.objects.get(order=order)
    (operation,) = PaymentOperation.objects.filter(payment=payment)
    assert (payment.status, operation.status) == ("authorized", "succeeded")
    assert [e.type for e in OrderEvent.objects.filter(order=order).order_by("sequence")] == [
        "order.created",
        "payment.authorized",
        "order.confirmed",
    ]
    assert OrderStatusChange.objects.filter(order=order, to_status="confirmed").count() == 1
    assert assert_provider_consistent(fake_stripe, order.pk)["authorized"] == 1
    # ... and the key is left resumable (in progress, checkpointed with the order)
    key = IdempotencyKey.objects.get(key="refused-key")
    assert (key.status, key.resource_id) == ("in_progress", str(order.pk))


@pytest.mark.django_db(transaction=True)
def test_a_claim_taken_over_during_the_provider_call_is_not_completed_with_the_outcome(
    witness, stocked_product, customer, fake_stripe
):
    # Given a paid checkout whose key's claim another request takes over while the
    # authorization is at the provider (as a takeover of a stale claim does)
    product = stocked_product(quantities={"main": 5}, price=700, currency="EUR")
    hold = witness.hold_response(path=AUTHORIZE_PATH)
    outcome: list[Any] = []

    def place() -> None:
        try:
            outcome.append(paid_checkout(customer, product, key="taken-key", one_statement=True))
        except BaseException as error:
            outcome.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=place)
    thread.start()
    assert hold.answered.wait(10)
    IdempotencyKey.objects.filter(key="taken-key").update(locked_at=timezone.now())
    hold.release.set()
    thread.join(20)

    # Then the request gives way (the key is the other request's to complete), and the
    # authorization is recorded all the same
    (error,) = outcome
    assert isinstance(error, ConcurrentUpdate)
    order = Order.objects.get()
    assert order.status == "confirmed"
    assert Payment.objects.get(order=order).status == "authorized"
    key = IdempotencyKey.objects.get(key="taken-key")
    assert (key.status, key.response_body) == ("in_progress", None)
    assert assert_provider_consistent(fake_stripe, order.pk)["authorized"] == 1


OUTCOME_WRITE = "WITH doc AS (SELECT"
REFUSE_KEY_COMPLETION_SQL = """
CREATE OR REPLACE FUNCTION oms_test_refuse_key_completion() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'key completion refused';
END
$fn$;
DROP TRIGGER IF EXISTS oms_test_refuse_key_completion ON core_idempotencykey;
CREATE TRIGGER oms_test_refuse_key_completion BEFORE UPDATE ON core_idempotencykey
FOR EACH ROW WHEN (NEW.status = 'completed' AND NEW.user_id = %s)
EXECUTE FUNCTION oms_test_refuse_key_completion();
"""
REFUSE_KEY_COMPLETION_DROP_SQL = """
DROP TRIGGER IF EXISTS oms_test_refuse_key_completion ON core_idempotencykey;
DROP FUNCTION IF EXISTS oms_test_refuse_key_completion();
"""
