"""Build and render the customer emails: subject, plain text and HTML from templates.

Rendering reads the order (and its payments) but writes nothing.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Sum
from django.template.loader import render_to_string

from core.money import money_format
from notifications.errors import EmailNotSendable
from notifications.models import EmailDelivery
from orders.models import Order
from payments.models import Payment

Kind = EmailDelivery.Kind

# What a kind needs from the caller, beyond the order itself.
REQUIRED_CONTEXT: dict[str, tuple[str, ...]] = {
    Kind.ORDER_SHIPPED: ("carrier", "tracking_number"),
    Kind.REFUND_ISSUED: ("refund_amount", "refunded_total"),
    Kind.RETURN_AUTHORIZED: ("return_id", "return_lines"),
    Kind.ORDER_REST_CANCELLED: ("cancelled_lines",),
}

# What to tell a customer about a decline, by Stripe decline code. Codes that hint at
# fraud (stolen_card, fraudulent, ...) get the generic hint on purpose.
DECLINE_HINTS = {
    "insufficient_funds": "Your card has insufficient funds. Try another card or contact "
    "your bank.",
    "expired_card": "Your card has expired. Try another card.",
    "incorrect_cvc": "The card's security code (CVC) was incorrect. Check it and try again.",
    "invalid_cvc": "The card's security code (CVC) was incorrect. Check it and try again.",
    "incorrect_number": "The card number was incorrect. Check it and try again.",
    "invalid_number": "The card number was incorrect. Check it and try again.",
    "invalid_expiry_month": "The card's expiry date was incorrect. Check it and try again.",
    "invalid_expiry_year": "The card's expiry date was incorrect. Check it and try again.",
    "authentication_required": "Your bank asked you to confirm the payment and it was not "
    "confirmed. Try again and complete the check your bank shows you.",
    "processing_error": "The card could not be processed. Try again in a few minutes.",
    "card_velocity_exceeded": "Your card's spending limit was reached. Try another card or "
    "contact your bank.",
}
DEFAULT_DECLINE_HINT = "Your bank declined the payment. Try another card or contact your bank."


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def email_kind_parse(kind: str) -> EmailDelivery.Kind:
    try:
        return EmailDelivery.Kind(kind)
    except ValueError:
        raise EmailNotSendable(f"Unknown email kind {kind!r}.", kind=kind) from None


def email_context_check(*, kind: EmailDelivery.Kind, context: Mapping[str, Any]) -> None:
    """Refuse a request that can never render, before anything is recorded or sent."""
    missing = [key for key in REQUIRED_CONTEXT.get(kind, ()) if not context.get(key)]
    if missing:
        raise EmailNotSendable(
            f"A {kind} email needs {', '.join(missing)} in its context.",
            kind=str(kind),
            missing=missing,
        )


def email_render(
    *, order: Order, kind: EmailDelivery.Kind, context: Mapping[str, Any]
) -> RenderedEmail:
    """Render the subject, plain text and HTML of one kind of email for an order."""
    email_context_check(kind=kind, context=context)
    data = _context_build(order=order, kind=kind, context=context)
    base = f"notifications/email/{kind}"
    subject = render_to_string(f"{base}_subject.txt", data)
    return RenderedEmail(
        # One line, whatever the template's whitespace: a header cannot hold a newline.
        subject=" ".join(subject.split()),
        text=render_to_string(f"{base}.txt", data),
        html=render_to_string(f"{base}.html", data),
    )


def _context_build(
    *, order: Order, kind: EmailDelivery.Kind, context: Mapping[str, Any]
) -> dict[str, Any]:
    currency = order.currency

    def money(amount: int) -> str:
        return money_format(amount, currency)

    data: dict[str, Any] = {
        "order": order,
        "order_number": order.number,
        "lines": [
            {
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": money(line.unit_price),
                "line_total": money(line.line_total),
            }
            for line in order.lines.all()
            if line.quantity > 0  # a line an edit removed stays, with nothing in it
        ],
        "subtotal": money(order.subtotal_amount),
        "shipping": money(order.shipping_amount),
        "tax": money(order.tax_amount),
        "total": money(order.total_amount),
        "address_lines": _address_lines(order.shipping_address),
        "customer_name": str(order.shipping_address.get("name") or ""),
        "unsubscribe_url": str(context.get("unsubscribe_url") or ""),
    }
    if kind == Kind.PAYMENT_FAILED:
        decline_code = str(context.get("decline_code") or _last_decline_code(order))
        data["decline_hint"] = DECLINE_HINTS.get(decline_code, DEFAULT_DECLINE_HINT)
        data["reservation_expires_at"] = order.reservation_expires_at.strftime("%Y-%m-%d %H:%M UTC")
    elif kind == Kind.ORDER_SHIPPED:
        data["carrier"] = str(context["carrier"])
        data["tracking_number"] = str(context["tracking_number"])
        tracking_url = str(context.get("tracking_url") or "")
        # Only web links become a link in the HTML part (no javascript: and the like).
        data["tracking_url"] = (
            tracking_url if tracking_url.startswith(("https://", "http://")) else ""
        )
    elif kind == Kind.REFUND_ISSUED:
        data["refund_amount"] = money(int(context["refund_amount"]))
        data["refunded_total"] = money(int(context["refunded_total"]))
    elif kind == Kind.RETURN_AUTHORIZED:
        data["return_id"] = str(context["return_id"])
        data["return_lines"] = [
            {"sku": str(line["sku"]), "name": str(line["name"]), "quantity": int(line["quantity"])}
            for line in context["return_lines"]
        ]
    elif kind == Kind.ORDER_REST_CANCELLED:
        data["cancelled_lines"] = [
            {"sku": str(line["sku"]), "name": str(line["name"]), "quantity": int(line["quantity"])}
            for line in context["cancelled_lines"]
        ]
    elif kind == Kind.ORDER_REFUNDED:
        refunded = context.get("refunded_amount")
        data["refunded_amount"] = money(
            int(refunded) if refunded is not None else _refunded_total(order)
        )
    return data


def _address_lines(address: Mapping[str, Any]) -> list[str]:
    city = " ".join(str(part) for part in (address.get("postal_code"), address.get("city")) if part)
    parts = [
        address.get("name"),
        address.get("line1"),
        address.get("line2"),
        city,
        address.get("country"),
    ]
    return [str(part) for part in parts if part]


def _last_decline_code(order: Order) -> str:
    payment = (
        order.payments.filter(status=Payment.Status.FAILED, is_current=True)
        .exclude(decline_code="")
        .order_by("-created_at", "-pk")
        .first()
    )
    return payment.decline_code if payment is not None else ""


def _refunded_total(order: Order) -> int:
    total = order.payments.aggregate(total=Sum("amount_refunded"))["total"]
    return int(total or 0)
