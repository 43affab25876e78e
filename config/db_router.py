"""The database router: writes go to the primary (`default`); reads go to the
streaming replica (`replica`) only while the current request allows it
(core.read_routing explains when). Without DATABASE_REPLICA_URL there is no `replica`
alias and every query goes to `default`."""

from typing import Any

from core.read_routing import PRIMARY, note_write, read_alias


class PrimaryReplicaRouter:
    def db_for_read(self, model: Any, **hints: Any) -> str:
        return read_alias(model._meta.app_label)

    def db_for_write(self, model: Any, **hints: Any) -> str:
        note_write(model._meta.app_label)
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        # One database, two servers: a row read on either relates to any other.
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        # The replica replays the primary's WAL; it is never migrated itself.
        return db == PRIMARY
