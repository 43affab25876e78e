from typing import Any

from django.core.management.base import BaseCommand

from flows.expire import orders_expire_overdue


class Command(BaseCommand):
    help = (
        "Expire unpaid orders whose reservation ran out and release their stock (the "
        "same as the scheduled task; voids follow through the outbox)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        expired = orders_expire_overdue()
        self.stdout.write(f"Expired {expired} order(s).")
