from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"

    def ready(self) -> None:
        from events import handlers  # noqa: F401  (registers outbox handlers)
