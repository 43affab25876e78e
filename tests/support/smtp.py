"""A real SMTP server on loopback for tests (aiosmtpd), with faults on demand.

``SmtpServer`` listens on 127.0.0.1 on a free port in a thread of its own and keeps every
message it accepts (envelope plus the parsed ``email.message.EmailMessage``)::

    with SmtpServer() as server:
        server.fail_next(2, code=451)        # the next two deliveries get a 4xx reply
        server.fail_next(1, code=550, stage="rcpt")  # or refuse the recipient
        server.refuse_connections()          # stop listening: connecting is refused
        server.accept_connections()          # listen again on the same port
        server.set_delay(0.3)                # answer DATA only after a pause
        server.messages                      # what was accepted, oldest first

Pull the fixtures into a test module with::

    pytest_plugins = ("tests.support.smtp",)

``smtp_server`` is a fresh server per test; ``smtp_backend`` is the same server with
Django's email settings pointed at it through the real SMTP backend.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.processes import free_port

LISTEN_HOST = "127.0.0.1"
# aiosmtpd logs every SMTP command at INFO; keep failing tests' output readable.
logging.getLogger("mail.log").setLevel(logging.WARNING)
FailStage = Literal["mail", "rcpt", "data"]


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: email.message.EmailMessage

    def header(self, name: str) -> str:
        return str(self.message[name] or "")

    @property
    def text(self) -> str:
        return self._body("plain")

    @property
    def html(self) -> str:
        return self._body("html")

    def _body(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        if part is None or part.get_content_subtype() != subtype:
            return ""
        return str(part.get_content())


@dataclass
class _Failure:
    remaining: int
    code: int
    reply: str
    stage: FailStage


class _Handler:
    """aiosmtpd hooks; runs on the server's event loop thread."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        failure = self._server._failure_take("mail")
        if failure is not None:
            return failure
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        failure = self._server._failure_take("rcpt")
        if failure is not None:
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        delay = self._server._delay
        if delay:
            await asyncio.sleep(delay)
        failure = self._server._failure_take("data")
        if failure is not None:
            return failure
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes):
            raw = envelope.content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self._server._record(
            ReceivedMessage(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=raw,
                message=parsed,
            )
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    """A loopback SMTP server that records messages and fails on request. Thread-safe."""

    def __init__(self, host: str = LISTEN_HOST) -> None:
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._failures: list[_Failure] = []
        self._delay = 0.0
        self._handler = _Handler(self)
        self._controller: Controller | None = None

    # Lifecycle.

    def start(self) -> SmtpServer:
        for _attempt in range(5):
            # Another process can take the probed port before the server binds it.
            port = self.port or free_port(self.host)
            controller = Controller(self._handler, hostname=self.host, port=port, ready_timeout=10)
            try:
                controller.start()
            except Exception:
                if self.port:
                    raise
                continue
            self.port = port
            self._controller = controller
            return self
        raise RuntimeError("could not start the SMTP server on a free port")

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Faults.

    def fail_next(
        self,
        times: int = 1,
        *,
        code: int = 451,
        reply: str | None = None,
        stage: FailStage = "data",
    ) -> None:
        """Answer the next `times` deliveries with `code` at MAIL, RCPT or DATA."""
        if not 400 <= code < 600:
            raise ValueError("a failure reply is 4xx or 5xx")
        default = "4.3.0 Try again later" if code < 500 else "5.7.1 Message rejected"
        with self._lock:
            self._failures.append(_Failure(times, code, reply or default, stage))

    def refuse_connections(self) -> None:
        """Stop listening, so connecting is refused, until accept_connections()."""
        self.stop()

    def accept_connections(self) -> None:
        """Listen again, on the same port."""
        if self._controller is None:
            self.start()

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each DATA (to widen race windows)."""
        self._delay = seconds

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._failures.clear()
        self._delay = 0.0

    # What arrived.

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    def _record(self, message: ReceivedMessage) -> None:
        with self._lock:
            self._messages.append(message)

    def _failure_take(self, stage: FailStage) -> str | None:
        with self._lock:
            for failure in self._failures:
                if failure.stage == stage and failure.remaining > 0:
                    failure.remaining -= 1
                    return f"{failure.code} {failure.reply}"
            self._failures = [failure for failure in self._failures if failure.remaining > 0]
        return None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A fresh loopback SMTP server for one test."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def smtp_backend(smtp_server: SmtpServer, settings: Any) -> SmtpServer:
    """smtp_server, with Django sending to it through the real SMTP backend."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = smtp_server.host
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    return smtp_server
