from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core import celery_metrics, tasks  # noqa: F401  (the outbox task; task metrics)
