from django.conf import settings
from django.db import models
from django.utils import timezone


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class IdempotencyKey(models.Model):
    """A client's Idempotency-Key and the response stored for it.

    Scoped per user. The row is claimed (in progress) before the use case runs and
    completed, with the response, in the same transaction as the use case's writes.
    """

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    request_method = models.CharField(max_length=10)
    request_path = models.CharField(max_length=2048)
    request_fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices)
    # Set while a request holds the key; cleared when a resumable request gives it up.
    locked_at = models.DateTimeField(null=True, blank=True)
    # What a multi-step use case created before its last step (e.g. the order id), so a
    # retry resumes it instead of starting over.
    resource_id = models.CharField(max_length=64, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


class OutboxMessage(models.Model):
    """Work a state change asked for, written in the same transaction as the change.

    One row per (event, handler). A relay dispatches it to Celery right after commit;
    a periodic sweeper dispatches what the relay missed (crash, broker outage). The
    handler is idempotent, so a message handled twice has one effect.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # written, not yet handed to the broker
        DISPATCHED = "dispatched", "Dispatched"  # handed to the broker; lease until available_at
        DONE = "done", "Done"
        DEAD = "dead", "Dead"  # retries exhausted: see the dead letter

    topic = models.CharField(max_length=100)
    handler = models.CharField(max_length=100)
    queue = models.CharField(max_length=32)
    payload = models.JSONField()
    dedup_key = models.CharField(max_length=255, unique=True)
    # The request that caused the work (X-Request-ID), carried into the worker's logs and
    # audit rows.
    request_id = models.CharField(max_length=64, blank=True, default="")
    # The W3C trace context (traceparent, tracestate) of the span that wrote it, when
    # tracing is on: the handler's span continues that trace, however it is dispatched.
    trace_context = models.JSONField(blank=True, default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # Pending: when it may be dispatched. Dispatched: when its lease runs out.
    available_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["status", "available_at"])]

    def __str__(self) -> str:
        return f"{self.topic} -> {self.handler} ({self.status})"


class DeadLetter(models.Model):
    """A task that exhausted its retries, kept with its error for a human to re-drive."""

    task_name = models.CharField(max_length=200)
    task_id = models.CharField(max_length=255, blank=True)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    error = models.TextField()
    traceback = models.TextField(blank=True)
    outbox_message = models.ForeignKey(
        OutboxMessage, null=True, blank=True, on_delete=models.SET_NULL, related_name="dead_letters"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    redriven_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.task_name} {self.created_at:%Y-%m-%d %H:%M}"


class MetricSample(models.Model):
    """One sample of a Prometheus series, taken each minute (`core.metric_samples`) so
    the admin's operations page can chart the last hour without a Prometheus server.
    All samples of one snapshot share `taken_at`."""

    taken_at = models.DateTimeField(db_index=True)
    # The sample name as scraped: oms_orders_placed_total, ..._bucket, a gauge's name.
    name = models.CharField(max_length=200)
    labels = models.JSONField(default=dict)
    value = models.FloatField()

    class Meta:
        ordering = ["taken_at", "name", "id"]

    def __str__(self) -> str:
        return f"{self.name}{self.labels} = {self.value} at {self.taken_at:%H:%M:%S}"


class OperationsPage(MetricSample):
    """The operations page of the admin: no rows of its own, a place in the admin's
    index (charts of the metric samples of the last hour)."""

    class Meta:
        proxy = True
        verbose_name = "operations page"
        verbose_name_plural = "operations page (last hour)"
