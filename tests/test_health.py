"""/health/live and /health/ready: what a load balancer polls every second."""

from datetime import timedelta

import pytest
from celery import current_app
from django.test import Client
from django.utils import timezone

from core.models import OutboxMessage
from tests.support.processes import free_port


def test_live_answers_without_asking_any_dependency():
    # No django_db mark: a database query here would fail the test.
    response = Client().get("/health/live")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db
def test_ready_reports_database_broker_outbox_and_breakers():
    response = Client().get("/health/ready")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["database"], body["broker"]) == ("ok", "ok", "ok")
    assert body["outbox"] == {"pending": 0, "oldest_pending_seconds": 0}
    assert Client().get("/health/").json()["status"] == "ok"


@pytest.mark.django_db
def test_ready_is_503_when_the_outbox_falls_behind(settings):
    settings.HEALTH_OUTBOX_BACKLOG_MAX = 1
    for number in range(2):
        OutboxMessage.objects.create(
            topic="order.confirmed",
            handler="notifications.order_status_email",
            queue="emails",
            payload={},
            dedup_key=f"health-{number}",
        )
    OutboxMessage.objects.update(created_at=timezone.now() - timedelta(seconds=90))

    response = Client().get("/health/ready")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["outbox"]["pending"] == 2
    assert response.json()["outbox"]["oldest_pending_seconds"] >= 90


@pytest.mark.django_db
def test_ready_is_503_when_the_broker_cannot_be_reached(settings):
    settings.HEALTH_BROKER_TIMEOUT_SECONDS = 0.5
    previous = current_app.conf.broker_url
    current_app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    try:
        response = Client().get("/health/ready")
    finally:
        current_app.conf.broker_url = previous

    assert response.status_code == 503
    assert (response.json()["broker"], response.json()["database"]) == ("unavailable", "ok")
