"""Django's PostgreSQL backend with a connection health check that costs no round trip
when the connection is plainly fine (ENGINE "core.db.backend"; config.settings.base
selects it with DATABASE_CONN_HEALTH_CHECKS and DATABASE_CONN_HEALTH_CHECK_SOCKET on)."""
