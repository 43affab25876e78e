from django.apps import AppConfig


class FulfilmentConfig(AppConfig):
    name = "fulfilment"

    def ready(self) -> None:
        from fulfilment import services  # noqa: F401  (registers its scrape-time metrics)
