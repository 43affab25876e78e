from typing import Any

from django.core.management.base import BaseCommand

from payments.services import orders_expire_and_void


class Command(BaseCommand):
    help = "Expire unpaid orders whose reservation ran out; release stock, void payments."

    def handle(self, *args: Any, **options: Any) -> None:
        expired = orders_expire_and_void()
        self.stdout.write(f"Expired {expired} order(s).")
