from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core import tasks  # noqa: F401  (registers the outbox task the relay sends by name)
