from typing import Any

from core.errors import DomainError


class EmailNotSendable(DomainError):
    """The request can never succeed as asked (unknown kind, missing context): no retry."""

    code = "email_not_sendable"
    status = 422
    title = "The email cannot be sent as requested"


class UnsubscribeLinkInvalid(DomainError):
    code = "unsubscribe_link_invalid"
    status = 400
    title = "The unsubscribe link is not valid"


class NotificationKindMandatory(DomainError):
    code = "notification_mandatory"
    status = 422
    title = "This kind of email cannot be switched off"


class EmailSendFailed(DomainError):
    """This attempt did not reach the SMTP server's acceptance; retry later.

    The delivery stays pending with ``last_error`` recorded. ``delivery_id`` is what
    ``order_email_mark_failed`` takes once retries run out. ``smtp_code`` is the server's
    reply code when it gave one; ``permanent`` is true for a 5xx reply, which retrying
    the same message is unlikely to fix.
    """

    code = "email_send_failed"
    status = 503
    title = "The email could not be sent; retry later"

    def __init__(
        self,
        detail: str | None = None,
        *,
        delivery_id: int,
        smtp_code: int | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail, delivery_id=delivery_id, smtp_code=smtp_code, **extra)
        self.delivery_id = delivery_id
        self.smtp_code = smtp_code

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments: rebuild through them, so the error survives pickling
        # (a task's result backend, a process pool).
        return (_rebuild, (type(self), self.detail, self.delivery_id, self.smtp_code))

    @property
    def permanent(self) -> bool:
        return self.smtp_code is not None and 500 <= self.smtp_code < 600


class EmailSendInProgress(EmailSendFailed):
    """Another worker is sending this email right now; retry later to see its outcome."""

    code = "email_send_in_progress"
    status = 409
    title = "The email is being sent by another worker; retry later"


def _rebuild(
    cls: type[EmailSendFailed], detail: str, delivery_id: int, smtp_code: int | None
) -> EmailSendFailed:
    return cls(detail, delivery_id=delivery_id, smtp_code=smtp_code)
