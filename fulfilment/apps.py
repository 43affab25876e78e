from django.apps import AppConfig


class FulfilmentConfig(AppConfig):
    name = "fulfilment"

    def ready(self) -> None:
        from fulfilment import handlers  # noqa: F401  (registers outbox handlers)
