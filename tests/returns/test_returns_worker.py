"""Returns with a real Celery worker: the authorized return's email goes out, and a
received return is refunded by the worker, once."""

import pytest

from orders.models import Return
from payments.models import Payment
from tests.payments.conftest import GOOD_CARD, PRICE, REFUND_PATH, order_action
from tests.returns.test_returns_api import open_return, return_action
from tests.support.worker import wait_for
from tests.worker.conftest import emails_received, smtp_env, wait_outbox_settled

pytest_plugins = (
    "tests.support.redis_server",
    "tests.support.worker",
    "tests.support.smtp",
    "tests.support.fake_stripe",
    "tests.support.fault_proxy",
)


@pytest.mark.django_db(transaction=True)
def test_a_worker_emails_the_authorized_return_and_refunds_it_once_received(
    start_worker, provider, checkout, customer_client, staff_client, product, smtp_server
):
    # given a worker, and a paid order of 2 units shipped by staff
    worker = start_worker(env=smtp_env(smtp_server))
    order_id = checkout(customer_client, GOOD_CARD, quantity=2).json()["id"]
    wait_outbox_settled(worker)
    assert order_action(staff_client, order_id, "ship").status_code == 200

    # when the customer returns 1 unit, support authorizes it and the warehouse staff
    # receive it
    return_id = open_return(customer_client, order_id, 1, product.sku).json()["id"]
    return_action(staff_client, order_id, return_id, "authorize")
    received = return_action(staff_client, order_id, return_id, "receive")
    assert received.json()["status"] == "received", received.json()

    # then the worker refunds it (one provider refund) and the customer hears of both
    wait_for(
        lambda: Return.objects.get(pk=return_id).status == "refunded",
        worker=worker,
        timeout=30,
        what="the return refunded",
    )
    wait_outbox_settled(worker)
    assert len(provider.sent(REFUND_PATH)) == 1
    payment = Payment.objects.get(order_id=order_id)
    assert payment.amount_refunded == PRICE
    emails = emails_received(smtp_server)
    assert emails[(order_id, "return_authorized")] == 1
    assert emails[(order_id, "refund_issued")] == 1
    (authorized_email,) = [
        message for message in smtp_server.messages if "is authorized" in message.header("Subject")
    ]
    assert return_id in authorized_email.text
    assert f"1 x {product.name} ({product.sku})" in authorized_email.text
