from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"

    def ready(self) -> None:
        from inventory import metrics  # noqa: F401  (registers its scrape-time metrics)
