"""The machine's RabbitMQ (127.0.0.1:5672), in a virtual host of the test's own.

Pull the fixtures into a test module with::

    pytest_plugins = ("tests.support.redis_server", "tests.support.worker",
                      "tests.support.rabbitmq")

* ``rabbitmq_vhost``: a vhost of the test's own (``oms_test_<pid>_<n>_<random>``),
  made with ``rabbitmqctl`` (guest may use it) and deleted after the test with
  everything in it; other vhosts and their queues are never touched. Skips when
  RabbitMQ or rabbitmqctl is not there.
* ``rabbitmq_broker``: this process's Celery app publishes to the vhost with the queue
  declarations config.celery gives a process on RabbitMQ (quorum queues). A module
  makes it its ``celery_broker`` (which tests.support.worker's ``start_worker`` uses)::

      @pytest.fixture
      def celery_broker(rabbitmq_broker):
          return rabbitmq_broker

* ``rabbitmq_queues(vhost)``: what RabbitMQ says of the vhost's queues (type, durable,
  arguments, messages ready and unacknowledged), by name.
PYTEST_DONT_REWRITE: no asserts here; failures raise AssertionError explicitly.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings

from tests.support.worker import app_on_broker

RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672
QUEUE_INFO = "name type durable arguments messages_ready messages_unacknowledged consumers"
_vhost_numbers = itertools.count(1)


def rabbitmqctl(*arguments: str) -> str:
    command = [shutil.which("rabbitmqctl") or "rabbitmqctl", *arguments]
    result = subprocess.run(  # noqa: S603 - fixed program, arguments from the tests
        command, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)}: {result.returncode}\n{result.stderr}")
    return result.stdout


def rabbitmq_queues(vhost: str) -> dict[str, dict[str, Any]]:
    """The vhost's queues by name, as ``rabbitmqctl list_queues`` reports them."""
    output = rabbitmqctl(
        "list_queues", "-q", "-p", vhost, "--formatter", "json", *QUEUE_INFO.split()
    )
    return {queue["name"]: queue for queue in json.loads(output or "[]")}


def rabbitmq_channels(vhost: str) -> list[dict[str, Any]]:
    """The vhost's open channels: whether each is in confirm mode, its connection."""
    output = rabbitmqctl(
        "list_channels", "-q", "--formatter", "json", "vhost", "confirm", "connection"
    )
    return [channel for channel in json.loads(output or "[]") if channel["vhost"] == vhost]


@dataclass(frozen=True)
class RabbitMQBroker:
    vhost: str

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{quote(self.vhost, safe='')}"


@pytest.fixture
def rabbitmq_vhost() -> Iterator[str]:
    """A new vhost for this test (nothing left by another), deleted after it."""
    try:
        socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=1).close()
    except OSError:
        pytest.skip(f"no RabbitMQ on {RABBITMQ_HOST}:{RABBITMQ_PORT}")
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("no rabbitmqctl to make a vhost of the test's own")
    vhost = f"oms_test_{os.getpid()}_{next(_vhost_numbers)}_{uuid.uuid4().hex[:6]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)


def _app_queues_forget(app: Any) -> None:
    """Drop what the app derived from its queue configuration and cached: the queues,
    the router that holds them, the default exchange and the sender that holds it."""
    for cached in ("queues", "default_queue", "router", "default_exchange", "send_task_message"):
        app.amqp.__dict__.pop(cached, None)
    app.amqp._rtable = None


@contextlib.contextmanager
def app_on_rabbitmq(broker: RabbitMQBroker, settings: Any) -> Iterator[None]:
    """Point this process's Celery app at the vhost, with config.celery's RabbitMQ queue
    declarations (and the transport options config.settings.base gives it); restore."""
    from config.celery import app, broker_queue_options

    options = broker_queue_options(broker.url, django_settings.TASK_QUEUES)
    saved = {key: app.conf[key] for key in options}
    app.conf.update(options)
    _app_queues_forget(app)
    try:
        with app_on_broker(broker.url, settings):
            yield
    finally:
        app.conf.update(saved)
        _app_queues_forget(app)


@pytest.fixture
def rabbitmq_broker(rabbitmq_vhost: str, settings: Any) -> Iterator[RabbitMQBroker]:
    """RabbitMQ (the test's vhost) as the broker of this process's Celery app."""
    broker = RabbitMQBroker(vhost=rabbitmq_vhost)
    with app_on_rabbitmq(broker, settings):
        yield broker
