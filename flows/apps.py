from django.apps import AppConfig


class FlowsConfig(AppConfig):
    """The order use cases: the one place that decides what happens to an order."""

    name = "flows"

    def ready(self) -> None:
        from flows import handlers  # noqa: F401  (registers outbox handlers)
