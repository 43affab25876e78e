from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        # The system checks; the breaker reported at scrape time.
        from payments import checks, metrics  # noqa: F401
