"""The worker tests point this process's Celery app at their own broker and back: the
tests that run after them in the same process still publish (eagerly) to the default."""

from typing import Any

from config.celery import app
from tests.support.worker import app_on_broker


def publish_eagerly() -> None:
    with app.producer_or_acquire(None) as producer:
        assert producer.connection is not None


def test_publishing_works_again_after_the_app_was_pointed_at_another_broker(
    settings: Any,
) -> None:
    default_url = app.conf.broker_url
    publish_eagerly()  # the default broker's pools now exist

    # Nothing needs to answer there: pointing the app at it opens no connection.
    with app_on_broker("redis://127.0.0.1:9/0", settings):
        assert app.conf.broker_url == "redis://127.0.0.1:9/0"

    assert app.conf.broker_url == default_url
    publish_eagerly()
