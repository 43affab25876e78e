"""Customer emails: each (order, kind) is sent at most once, however often it is asked for.

Call these outside any transaction (a Celery task, a management command): every write
commits on its own, and no transaction stays open while the SMTP server is talked to.
"""

import logging
import smtplib
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import F, Q
from django.utils import timezone

from core.errors import NotFound
from notifications.errors import EmailNotSendable, EmailSendFailed, EmailSendInProgress
from notifications.models import OPTIONAL_KINDS, EmailDelivery
from notifications.preferences import notification_wanted, unsubscribe_url
from notifications.rendering import (
    RenderedEmail,
    email_context_check,
    email_kind_parse,
    email_render,
)
from orders.models import Order

logger = logging.getLogger(__name__)

# Until config.settings.email is imported by every settings module, fall back to these.
_LAST_ERROR_MAX_LENGTH = 2000

Status = EmailDelivery.Status


def order_email_send(
    *,
    order_id: uuid.UUID | str,
    kind: str,
    context: Mapping[str, Any] | None = None,
    dedup_key: str = "",
) -> EmailDelivery | None:
    """Send the order's email of this kind unless it was sent already; return its delivery.

    Nothing is sent (None) when the kind is optional and the customer switched it off.
    `dedup_key` tells apart emails of one kind an order gets more than once (each refund).

    `context` carries what the order does not know. order_shipped requires `carrier` and
    `tracking_number` and takes an optional `tracking_url`. payment_failed may take a
    `decline_code` and order_refunded a `refunded_amount` (minor units); they default to
    what the order's payments record.

    Raise:
    * EmailSendFailed when the SMTP server did not accept the message (refused, timed
      out, 4xx/5xx reply). The delivery stays pending with `last_error`; retry later with
      the same arguments. The error carries `delivery_id` for order_email_mark_failed.
    * EmailSendInProgress (an EmailSendFailed) when another worker is sending this very
      email now; retry later to find it sent.
    * EmailNotSendable for an unknown kind or missing context, and NotFound for an
      unknown order: retrying cannot help.
    """
    email_kind = email_kind_parse(kind)
    context = context or {}
    email_context_check(kind=email_kind, context=context)
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        raise NotFound(f"No order {order_id}.")
    if not order.email:
        raise EmailNotSendable(f"Order {order.number} has no email address.")
    if not notification_wanted(user_id=order.customer_id, kind=email_kind):
        logger.info("Email %s for order %s: switched off by the customer", kind, order.number)
        return None

    delivery = _delivery_get_or_create(order=order, kind=email_kind, dedup_key=dedup_key)
    if delivery.status == Status.SENT:
        return delivery
    unsubscribe = (
        unsubscribe_url(user_id=order.customer_id, kind=email_kind)
        if email_kind in OPTIONAL_KINDS
        else ""
    )
    rendered = email_render(
        order=order, kind=email_kind, context={**context, "unsubscribe_url": unsubscribe}
    )
    claimed_at = _delivery_claim(delivery=delivery, order=order, subject=rendered.subject)
    delivery.refresh_from_db()
    if claimed_at is None:
        if delivery.status == Status.SENT:
            return delivery
        raise EmailSendInProgress(
            f"Email {email_kind} for order {order.number} is being sent by another worker.",
            delivery_id=delivery.pk,
        )

    try:
        message = _message_build(delivery=delivery, rendered=rendered, unsubscribe=unsubscribe)
        sent = message.send(fail_silently=False)
        if sent != 1:
            raise smtplib.SMTPException("the backend sent no message")
    except (smtplib.SMTPException, OSError) as error:
        # OSError covers refused and dropped connections, timeouts and TLS failures.
        smtp_code = _smtp_code(error)
        detail = _error_describe(error)
        _delivery_release(delivery=delivery, claimed_at=claimed_at, error=detail)
        logger.warning(
            "Email %s for order %s not sent (attempt %s): %s",
            email_kind,
            order.number,
            delivery.attempts,
            detail,
        )
        raise EmailSendFailed(
            f"Email {email_kind} for order {order.number} was not sent: {detail}",
            delivery_id=delivery.pk,
            smtp_code=smtp_code,
        ) from error
    except Exception as error:
        # Not an SMTP outcome (a bug, a bad header): free the claim so a fixed retry need
        # not wait for the lock to expire, and let the error through as it is.
        _delivery_release(delivery=delivery, claimed_at=claimed_at, error=repr(error))
        raise

    _delivery_mark_sent(delivery=delivery)
    delivery.refresh_from_db()
    logger.info(
        "Email %s for order %s sent to %s as %s",
        email_kind,
        order.number,
        delivery.to_address,
        delivery.message_id,
    )
    return delivery


def order_email_mark_failed(*, delivery_id: int, error: str) -> EmailDelivery:
    """Give up on a delivery whose retries ran out. One that got sent meanwhile stays sent;
    a later order_email_send tries a failed one again."""
    now = timezone.now()
    EmailDelivery.objects.filter(pk=delivery_id).exclude(status=Status.SENT).update(
        status=Status.FAILED,
        last_error=error[:_LAST_ERROR_MAX_LENGTH],
        locked_at=None,
        updated_at=now,
    )
    delivery = EmailDelivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound(f"No email delivery {delivery_id}.")
    return delivery


def email_message_id(delivery: EmailDelivery) -> str:
    """The Message-ID of a delivery: the same on every attempt, unique across databases
    (the order's UUID) and environments (the domain)."""
    domain = settings.EMAIL_MESSAGE_ID_DOMAIN
    return f"<email-delivery-{delivery.pk}.{delivery.order_id.hex}@{domain}>"


def _delivery_get_or_create(
    *, order: Order, kind: EmailDelivery.Kind, dedup_key: str
) -> EmailDelivery:
    # get_or_create inserts in a savepoint and, when a concurrent insert wins the unique
    # constraint (IntegrityError), reads the winner's row instead.
    delivery, _created = EmailDelivery.objects.get_or_create(
        order=order, kind=kind, dedup_key=dedup_key[:64], defaults={"to_address": order.email}
    )
    return delivery


def _delivery_claim(*, delivery: EmailDelivery, order: Order, subject: str) -> datetime | None:
    """Take the delivery for this attempt with one conditional UPDATE; return the claim's
    time (its token), or None when it is sent or another worker holds a live claim."""
    now = timezone.now()
    lock_timeout = settings.EMAIL_SEND_LOCK_TIMEOUT
    claimed = (
        EmailDelivery.objects.filter(pk=delivery.pk)
        .exclude(status=Status.SENT)
        .filter(Q(locked_at__isnull=True) | Q(locked_at__lt=now - lock_timeout))
        .update(
            status=Status.PENDING,
            attempts=F("attempts") + 1,
            locked_at=now,
            to_address=order.email,
            subject=subject,
            message_id=email_message_id(delivery),
            updated_at=now,
        )
    )
    return now if claimed else None


def _delivery_mark_sent(*, delivery: EmailDelivery) -> None:
    now = timezone.now()
    EmailDelivery.objects.filter(pk=delivery.pk).exclude(status=Status.SENT).update(
        status=Status.SENT, sent_at=now, locked_at=None, updated_at=now
    )


def _delivery_release(*, delivery: EmailDelivery, claimed_at: datetime, error: str) -> None:
    """Record a failed attempt and free the claim, unless another worker took it over."""
    EmailDelivery.objects.filter(pk=delivery.pk, locked_at=claimed_at).update(
        last_error=error[:_LAST_ERROR_MAX_LENGTH], locked_at=None, updated_at=timezone.now()
    )


def _message_build(
    *, delivery: EmailDelivery, rendered: RenderedEmail, unsubscribe: str
) -> EmailMultiAlternatives:
    headers = {"Message-ID": delivery.message_id}
    if unsubscribe:
        # RFC 8058: a mail client may unsubscribe with one POST to the link.
        headers["List-Unsubscribe"] = f"<{unsubscribe}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[delivery.to_address],
        headers=headers,
    )
    message.attach_alternative(rendered.html, "text/html")
    return message


def _smtp_code(error: BaseException) -> int | None:
    if isinstance(error, smtplib.SMTPResponseException):
        return int(error.smtp_code)
    if isinstance(error, smtplib.SMTPRecipientsRefused) and error.recipients:
        code, _message = next(iter(error.recipients.values()))
        return int(code)
    return None


def _error_describe(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        reply = error.smtp_error
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        return f"{type(error).__name__}: {error.smtp_code} {text}"
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(
            f"{address}: {code} {reply.decode(errors='replace')}"
            for address, (code, reply) in error.recipients.items()
        )
        return f"SMTPRecipientsRefused: {refused}"
    return f"{type(error).__name__}: {error}"
