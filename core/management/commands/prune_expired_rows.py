from typing import Any

from django.core.management.base import BaseCommand

from core.pruning import expired_rows_prune


class Command(BaseCommand):
    help = (
        "Delete outbox messages done longer ago than OUTBOX_DONE_RETENTION_HOURS and "
        "idempotency keys older than IDEMPOTENCY_KEY_TTL_HOURS, in batches."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = expired_rows_prune()
        self.stdout.write(
            f"Pruned {result.outbox_messages} done outbox message(s) and "
            f"{result.idempotency_keys} idempotency key(s)."
        )
