from django.db import models
from django.db.models import F, Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from core.models import TimeStampedModel


class Payment(ConcurrentTransitionMixin, TimeStampedModel):
    """One authorization attempt for an order: a Stripe PaymentIntent."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # authorize call recorded, outcome not known yet
        REQUIRES_ACTION = "requires_action", "Requires action"  # 3-D Secure pending
        AUTHORIZED = "authorized", "Authorized"  # funds held, capturable
        CAPTURED = "captured", "Captured"  # money taken (refunds tracked by amount)
        REFUNDED = "refunded", "Refunded"  # all that was captured was given back
        FAILED = "failed", "Failed"  # declined or never authorized
        VOIDED = "voided", "Voided"  # authorization released

    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="payments")
    provider = models.CharField(max_length=32, default="stripe")
    provider_payment_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    payment_method = models.CharField(max_length=255)
    # Minor units of `currency`.
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    amount_captured = models.BigIntegerField(default=0)
    amount_refunded = models.BigIntegerField(default=0)
    status = FSMField(max_length=32, choices=Status.choices, default=Status.PENDING, protected=True)
    client_secret = models.CharField(max_length=255, blank=True)
    decline_code = models.CharField(max_length=64, blank=True)
    # Whether this is the order's payment. An order edit's re-authorization is not until
    # its edit commits; the authorization it replaces is not from then on (and is voided).
    is_current = models.BooleanField(default=True)
    # The order edit this payment re-authorizes the order for (flows.edit): one per edit.
    order_edit = models.OneToOneField(
        "orders.OrderEdit",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payment",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0)
                & Q(amount_captured__gte=0)
                & Q(amount_captured__lte=F("amount"))
                & Q(amount_refunded__gte=0)
                & Q(amount_refunded__lte=F("amount_captured")),
                name="payment_amounts_consistent",
            ),
            # At most one live authorization is the order's (an edit's re-authorization
            # and the one it replaces are live side by side, only one of them current).
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(
                    status__in=["pending", "requires_action", "authorized", "captured", "refunded"]
                )
                & Q(is_current=True),
                name="payment_one_current_live_per_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_payment_id or self.pk} ({self.status})"

    # Transitions guard and change the status only; payments.services.operations and
    # payments.services.intents do the rest.

    @transition(field=status, source=Status.PENDING, target=Status.REQUIRES_ACTION)
    def require_action(self) -> None:
        """The customer must authenticate (3-D Secure) before the card is authorized."""

    @transition(
        field=status,
        source=[Status.PENDING, Status.REQUIRES_ACTION, Status.FAILED],
        target=Status.AUTHORIZED,
    )
    def authorize(self) -> None:
        """Funds held. From failed: the provider authorized an attempt given up for lost."""

    @transition(field=status, source=[Status.PENDING, Status.REQUIRES_ACTION], target=Status.FAILED)
    def fail(self) -> None:
        """Declined, abandoned or never sent: nothing is held."""

    @transition(field=status, source=Status.AUTHORIZED, target=Status.CAPTURED)
    def capture(self) -> None:
        """Money taken; later refunds add to amount_refunded."""

    @transition(field=status, source=Status.CAPTURED, target=Status.REFUNDED)
    def refund_fully(self) -> None:
        """The refunds add up to all that was captured."""

    @transition(
        field=status,
        source=[Status.PENDING, Status.REQUIRES_ACTION, Status.AUTHORIZED],
        target=Status.VOIDED,
    )
    def void(self) -> None:
        """The authorization was released (or the intent canceled at the provider)."""


class PaymentOperation(TimeStampedModel):
    """A call to the payment provider, recorded (and committed) before it is made.

    The Stripe idempotency key is derived from this row's id, so retrying the same
    operation can never move money twice. Rows are never deleted.
    """

    class Kind(models.TextChoices):
        AUTHORIZE = "authorize", "Authorize"
        CAPTURE = "capture", "Capture"
        VOID = "void", "Void"
        REFUND = "refund", "Refund"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # about to be sent / in flight
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"  # definite: declined or rejected; nothing moved
        UNKNOWN = "unknown", "Unknown"  # timeout / dropped: retry with the same key

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="operations")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    provider_object_id = models.CharField(max_length=255, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # What a capture is for: "shipment-<id>-report-<first shipment line id>" (the units
    # one shipped report said left), "order" (the whole order at once) or "rest" (the
    # release of what the order will never capture). Empty for other kinds.
    reference = models.CharField(max_length=64, blank=True)
    # A capture that releases the rest of the authorization (Stripe's final_capture).
    final = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="payment_operation_amount"),
            # One capture per shipped report that has not definitely failed: no double
            # capture of the same units.
            models.UniqueConstraint(
                fields=["payment", "reference"],
                condition=Q(kind="capture", status__in=["pending", "succeeded", "unknown"]),
                name="payment_operation_one_capture_per_reference",
            ),
            # One final capture: the authorization's rest is released once.
            models.UniqueConstraint(
                fields=["payment"],
                condition=Q(
                    kind="capture", final=True, status__in=["pending", "succeeded", "unknown"]
                ),
                name="payment_operation_one_final_capture",
            ),
            # Captures of a payment go out one at a time, in order (the final one last).
            models.UniqueConstraint(
                fields=["payment"],
                condition=Q(kind="capture", status__in=["pending", "unknown"]),
                name="payment_operation_one_open_capture",
            ),
            models.UniqueConstraint(
                fields=["payment"],
                condition=Q(kind="void", status__in=["pending", "succeeded", "unknown"]),
                name="payment_operation_one_void",
            ),
        ]
        indexes = [models.Index(fields=["status", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        return f"oms-payment-operation-{self.pk}"


class StripeEvent(models.Model):
    """A webhook event, stored once by its id.

    `payload` is the event with NUL and lone surrogates escaped (JSONB cannot hold
    them), `body` the exact bytes Stripe signed. An id or type longer than its column
    is kept as a prefix and a hash of the whole (payments.webhooks).
    """

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=128)
    payload = models.JSONField()
    body = models.BinaryField(default=b"", editable=False)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
