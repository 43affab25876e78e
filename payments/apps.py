from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        from payments import (  # noqa: F401  (registers outbox handlers and checks)
            checks,
            handlers,
        )
