"""The benchmark's own PostgreSQL database: recreate, drop, describe, its backends."""

import time
from urllib.parse import urlsplit, urlunsplit


def _admin_url(database_url: str) -> str:
    return urlunsplit(urlsplit(database_url)._replace(path="/postgres"))


def database_name(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/")


def database_drop(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    name = sql.Identifier(database_name(database_url))
    with psycopg.connect(_admin_url(database_url), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def database_recreate(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    database_drop(database_url)
    name = sql.Identifier(database_name(database_url))
    with psycopg.connect(_admin_url(database_url), autocommit=True) as admin:
        for attempt in range(10):
            try:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
                return
            except psycopg.errors.ObjectInUse:
                # Someone else is copying template1 right now (test runs create databases).
                if attempt == 9:
                    raise
                time.sleep(0.5)


def postgres_version(database_url: str) -> str:
    import psycopg

    with psycopg.connect(_admin_url(database_url)) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        settings_rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections') ORDER BY name"
        ).fetchall()
    settings_text = ", ".join(f"{name}={value}" for name, value in settings_rows)
    return f"PostgreSQL {row[0] if row else '?'} ({settings_text})"


def backend_pids(database: str) -> list[int]:
    """PostgreSQL backends connected to the benchmark database, except this process's."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        )
        return [row[0] for row in cursor.fetchall()]
