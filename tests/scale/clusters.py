"""PostgreSQL servers of a test's own: a primary in a temporary directory, a streaming
replica made from it with pg_basebackup, and PgBouncer in front of either; each on a
free port of its own, never the shared server on 5432.

PYTEST_DONT_REWRITE: no asserts here; failures raise AssertionError explicitly.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.support.processes import LOOPBACK, free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# initdb and postgres refuse to run as root: the servers run as this system user.
PG_USER = "postgres"


def _as_postgres(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        command = ["runuser", "-u", PG_USER, "--", *command]
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


class PostgresServer:
    """One PostgreSQL server (a data directory and a port)."""

    def __init__(self, datadir: Path, port: int) -> None:
        self.datadir = datadir
        self.port = port

    def url(self, database: str) -> str:
        return f"postgres://postgres@{LOOPBACK}:{self.port}/{database}"

    def start(self) -> PostgresServer:
        _as_postgres(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.datadir / "log")]
            + ["-o", f"-p {self.port}", "-w", "-t", "60", "start"]
        )
        return self

    def stop(self) -> None:
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"])

    def sql(self, query: str, *params: Any, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement in autocommit; its rows (none for a statement without)."""
        with psycopg.connect(
            host=LOOPBACK, port=self.port, user="postgres", dbname=database, autocommit=True
        ) as connection:
            cursor = connection.execute(query, params or None)
            return cursor.fetchall() if cursor.description else []


class Cluster:
    """A primary and its streaming replica, in one temporary directory."""

    def __init__(self, *, durable: bool = False) -> None:
        # durable: fsync and full-page writes on, as in production (for WAL measurements).
        self.durable = durable
        self.workdir = Path(tempfile.mkdtemp(prefix="oms-cluster-"))
        if os.geteuid() == 0:
            shutil.chown(self.workdir, PG_USER)
        self.primary = PostgresServer(self.workdir / "primary", free_port())
        self.replica = PostgresServer(self.workdir / "replica", free_port())

    def start(self, *, with_replica: bool = True) -> Cluster:
        primary = self.primary
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(primary.datadir), "-U", "postgres"]
            + ["--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]
        )
        with open(primary.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                "\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.workdir}'\n"
                "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n"
                "max_connections = 100\n"
            )
            if not self.durable:
                # Test data only: durability is not what these tests are about.
                conf.write("fsync = off\nfull_page_writes = off\n")
        with open(primary.datadir / "pg_hba.conf", "a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        primary.start()
        if not with_replica:
            return self
        _as_postgres(
            [str(PG_BIN / "pg_basebackup"), "-h", LOOPBACK, "-p", str(primary.port)]
            + ["-U", "postgres", "-D", str(self.replica.datadir), "-R", "-X", "stream"]
        )
        self.replica.start()
        return self

    def stop(self) -> None:
        for server in (self.replica, self.primary):
            if not (server.datadir / "postmaster.pid").exists():
                continue
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def wait_for_replay(self, timeout: float = 20.0) -> None:
        """Until the replica has replayed everything the primary wrote so far."""
        (target,) = self.primary.sql("SELECT pg_current_wal_lsn()")[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (caught_up,) = self.replica.sql(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", str(target)
            )[0]
            if caught_up:
                return
            time.sleep(0.05)
        raise AssertionError("the replica did not catch up")


def manage(database_url: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a management command against the given database: its standard output."""
    completed = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url,
            **(env or {}),
        },
        check=False,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{completed.stderr}")
    return completed.stdout


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    _wait_for_port(port, timeout)


PGBOUNCER = "/usr/sbin/pgbouncer"


def pgbouncer_binary() -> str:
    """Debian's pgbouncer, installed with apt-get when it is missing."""
    if not Path(PGBOUNCER).exists():
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "pgbouncer"],
            check=True,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return PGBOUNCER


class PgBouncer:
    """PgBouncer in transaction mode in front of one server's database, with a small
    server pool (`pool_size`), so that clients share server connections."""

    def __init__(self, server: PostgresServer, database: str, *, pool_size: int = 2) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="oms-pgbouncer-"))
        self.port = free_port()
        self.database = database
        self.process: subprocess.Popen[bytes] | None = None
        (self.workdir / "userlist.txt").write_text('"postgres" ""\n')
        (self.workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{database} = host={LOOPBACK} port={server.port} dbname={database}\n"
            "[pgbouncer]\n"
            f"listen_addr = {LOOPBACK}\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.workdir / 'userlist.txt'}\n"
            "admin_users = postgres\npool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nmax_client_conn = 200\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\n"
        )
        if os.geteuid() == 0:
            for path in (self.workdir, *self.workdir.iterdir()):
                shutil.chown(path, PG_USER)

    def url(self) -> str:
        return f"postgres://postgres@{LOOPBACK}:{self.port}/{self.database}"

    def start(self) -> PgBouncer:
        self.process = subprocess.Popen(
            [pgbouncer_binary(), str(self.workdir / "pgbouncer.ini")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # PgBouncer refuses to run as root.
            user=PG_USER if os.geteuid() == 0 else None,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def show(self, what: str) -> list[dict[str, str]]:
        """`SHOW <what>` on PgBouncer's admin console, as dicts (psql: the console
        speaks only the simple query protocol)."""
        completed = subprocess.run(
            [str(PG_BIN / "psql"), "-h", LOOPBACK, "-p", str(self.port), "-U", "postgres"]
            + ["-d", "pgbouncer", "--csv", "-c", f"SHOW {what}"],
            check=True,
            capture_output=True,
            text=True,
        )
        return list(csv.DictReader(io.StringIO(completed.stdout)))
