"""Outbox relay throughput: messages per second from commit to handled, by broker and
number of worker processes.

    python -m benchmarks.relay --messages 2000 --workers 1,2,4 --brokers redis,rabbitmq --drop

Recreates its own database (the name must contain `bench`) and migrates it. Brokers of
its own: a redis-server on a free port, and a vhost made with `rabbitmqctl` on the
machine's RabbitMQ (--rabbitmq-url; deleted at the end), where config.celery declares
the task queues as quorum queues with publisher confirms. For each broker and each
--workers count: that many `celery worker -Q events --concurrency 1` processes (the
production settings, ready once their heartbeat file appears), then one publishing
process (the same settings, as a web process) commits --messages outbox messages of a
benchmark topic in transactions of --batch through core.outbox's `outbox_publish`;
after each commit the relay hands them to the broker as in production. The handler
(benchmarks.relay_handler) inserts one row. Reported: the publisher's commit-and-relay
rate, and from the outbox rows, done_at - created_at (p50, p99, max) and the overall
rate, messages / (last done_at - first created_at).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from benchmarks.database import database_drop, database_name, database_recreate
from benchmarks.django_env import django_environment
from benchmarks.events import redis_start
from benchmarks.options import DEFAULT_DATABASE_URL
from benchmarks.procfs import background_load, proc_children, proc_cpu_seconds
from benchmarks.source import REPO_ROOT
from benchmarks.stats import percentile

DATABASE_URL = DEFAULT_DATABASE_URL.replace("oms_bench", "oms_bench_relay")
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672"
HANDLER_MODULE = "benchmarks.relay_handler"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.relay",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--database-url", default=DATABASE_URL)
    parser.add_argument("--settings", default="config.settings.production")
    parser.add_argument("--messages", type=int, default=2000, help="outbox messages per run")
    parser.add_argument("--batch", type=int, default=100, help="messages per transaction")
    parser.add_argument("--workers", default="1,2,4", help="worker processes, one run each")
    parser.add_argument("--brokers", default="redis,rabbitmq", help="redis and/or rabbitmq")
    parser.add_argument("--rabbitmq-url", default=RABBITMQ_URL, help="without the vhost")
    parser.add_argument("--timeout", type=float, default=300.0, help="per run, seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    # The publishing process (started by the run itself).
    parser.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if "bench" not in (urlsplit(args.database_url).path or ""):
        parser.error("the database name must contain 'bench': this script drops and recreates it")
    unknown = set(args.brokers.split(",")) - {"redis", "rabbitmq"}
    if unknown:
        parser.error(f"unknown brokers: {', '.join(sorted(unknown))}")
    if args.messages < 1 or args.batch < 1:
        parser.error("--messages and --batch must be at least 1")
    args.source_root = REPO_ROOT
    return args


# --- the publishing process -------------------------------------------------------------


def publish(args: argparse.Namespace) -> int:
    """Commit the messages in batches; print the time it took as JSON (one line)."""
    import django

    django.setup()
    from django.db import connection, transaction

    from benchmarks.relay_handler import TOPIC
    from core.outbox import outbox_publish

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    backend_cpu = proc_cpu_seconds(backend)
    cpu = time.process_time()
    started = time.perf_counter()
    for first in range(0, args.messages, args.batch):
        # The relay runs on commit (transaction.on_commit), as after a checkout.
        with transaction.atomic():
            for number in range(first, min(first + args.batch, args.messages)):
                key = f"{args.run_id}-{number}"
                outbox_publish(topic=TOPIC, payload={"key": key}, key=key)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    database_cpu_seconds = proc_cpu_seconds(backend) - backend_cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu_seconds, "db_cpu": database_cpu_seconds}))
    return 0


# --- brokers ----------------------------------------------------------------------------


def rabbitmqctl(*arguments: str) -> None:
    program = shutil.which("rabbitmqctl")
    if program is None:
        raise RuntimeError("rabbitmqctl not found")
    subprocess.run([program, "-q", *arguments], check=True, capture_output=True, timeout=60)  # noqa: S603


def database_backends(database_url: str) -> list[int]:
    """The PostgreSQL backends connected to the benchmark database (but this query's)."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [row[0] for row in rows]


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    return {pid: proc_cpu_seconds(pid) for pid in pids}


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


@dataclass
class Brokers:
    urls: dict[str, str]
    redis: subprocess.Popen[bytes] | None = None
    vhost: str = ""

    def close(self) -> None:
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(timeout=10)
        if self.vhost:
            rabbitmqctl("delete_vhost", self.vhost)


def brokers_start(args: argparse.Namespace, scratch: Path) -> Brokers:
    brokers = Brokers(urls={})
    wanted = args.brokers.split(",")
    if "redis" in wanted:
        brokers.redis, port = redis_start(scratch)
        brokers.urls["redis"] = f"redis://127.0.0.1:{port}/0"
    if "rabbitmq" in wanted:
        vhost = f"oms_bench_relay_{os.getpid()}"
        user = urlsplit(args.rabbitmq_url).username or "guest"
        rabbitmqctl("add_vhost", vhost)
        brokers.vhost = vhost
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        brokers.urls["rabbitmq"] = urlunsplit(
            urlsplit(args.rabbitmq_url)._replace(path="/" + quote(vhost, safe=""))
        )
    return brokers


# --- one run ----------------------------------------------------------------------------


def workers_start(
    args: argparse.Namespace, env: dict[str, str], count: int, scratch: Path
) -> list[subprocess.Popen[bytes]]:
    workers = []
    heartbeats = []
    for index in range(count):
        heartbeat = scratch / f"worker{index}.heartbeat"
        heartbeat.unlink(missing_ok=True)
        heartbeats.append(heartbeat)
        log = (scratch / f"worker{index}.log").open("ab")
        workers.append(
            subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [
                    *(sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "events"),
                    *("--concurrency", "1", "--loglevel", "WARNING"),
                    *("--include", f"core.heartbeat,{HANDLER_MODULE}"),
                    *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                    *("--hostname", f"bench-relay-{index}@{os.getpid()}"),
                ],
                cwd=args.source_root,
                env=env | {"WORKER_HEARTBEAT_FILE": str(heartbeat)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    deadline = time.monotonic() + 90
    while not all(path.exists() for path in heartbeats):
        if any(worker.poll() is not None for worker in workers) or time.monotonic() > deadline:
            workers_stop(workers)
            raise RuntimeError("a worker did not start: see " + str(scratch / "worker0.log"))
        time.sleep(0.2)
    return workers


def workers_stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def tables_clear(database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM core_outboxmessage")
        conn.execute("TRUNCATE bench_relay_handled")


def handled_count(database_url: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'done'), "
            "(SELECT count(*) FROM bench_relay_handled) FROM core_outboxmessage"
        ).fetchone()
    return (row[0], row[1]) if row else (0, 0)


def latencies(database_url: str) -> tuple[list[float], float]:
    """done_at - created_at of each message, ms (sorted); seconds from the first
    created_at to the last done_at."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM done_at - created_at) * 1000 FROM core_outboxmessage "
            "WHERE status = 'done' ORDER BY 1"
        ).fetchall()
        span = conn.execute(
            "SELECT extract(epoch FROM max(done_at) - min(created_at)) FROM core_outboxmessage"
        ).fetchone()
    return [float(row[0]) for row in rows], float(span[0] if span and span[0] else 0.0)


def worker_pids(workers: list[subprocess.Popen[bytes]]) -> list[int]:
    """Each worker's main process and its pool process."""
    return [pid for worker in workers for pid in [worker.pid, *proc_children(worker.pid)]]


def relay_run(
    args: argparse.Namespace,
    env: dict[str, str],
    broker: str,
    workers: int,
    scratch: Path,
    broker_pid: int | None,
) -> dict[str, Any]:
    tables_clear(args.database_url)
    processes = workers_start(args, env, workers, scratch / f"{broker}-{workers}")
    try:
        load = background_load()
        workers_before = cpu_seconds(worker_pids(processes))
        backends_before = cpu_seconds(database_backends(args.database_url))
        broker_before = cpu_seconds([broker_pid] if broker_pid else [])
        published = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                *(sys.executable, "-m", "benchmarks.relay", "--publish"),
                *("--database-url", args.database_url, "--settings", args.settings),
                *("--messages", str(args.messages), "--batch", str(args.batch)),
                *("--run-id", uuid.uuid4().hex[:12]),
            ],
            cwd=args.source_root,
            env=env,
            capture_output=True,
            check=True,
            timeout=args.timeout,
        )
        publisher = json.loads(published.stdout.decode().strip().splitlines()[-1])
        deadline = time.monotonic() + args.timeout
        while (done := handled_count(args.database_url))[0] < args.messages:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{broker}, {workers} workers: {done} of {args.messages}")
            time.sleep(0.2)
        workers_cpu = cpu_used(workers_before, cpu_seconds(worker_pids(processes)))
        backends_cpu = cpu_used(backends_before, cpu_seconds(database_backends(args.database_url)))
        broker_cpu = cpu_used(broker_before, cpu_seconds([broker_pid] if broker_pid else []))
    finally:
        workers_stop(processes)
    per_message_ms = 1000 / args.messages
    values, span = latencies(args.database_url)
    result = {
        "broker": broker,
        "workers": workers,
        "messages": len(values),
        "handled_rows": done[1],
        "publish_per_second": args.messages / publisher["seconds"],
        # CPU per message: the publishing process (commit and relay), the workers (main
        # and pool processes), PostgreSQL (the publisher's and the workers' backends),
        # the broker (Redis only: the RabbitMQ node is shared).
        "publisher_cpu_ms": publisher["cpu"] * per_message_ms,
        "workers_cpu_ms": workers_cpu * per_message_ms,
        "postgres_cpu_ms": (publisher["db_cpu"] + backends_cpu) * per_message_ms,
        "broker_cpu_ms": broker_cpu * per_message_ms if broker_pid else None,
        "per_second": len(values) / span if span else 0.0,
        "p50_ms": percentile(values, 0.5),
        "p99_ms": percentile(values, 0.99),
        "max_ms": max(values),
        "background_load_percent": load,
    }
    print(
        f"{broker:8} {workers} workers: {result['per_second']:6.0f} messages/s handled "
        f"(committed and relayed {result['publish_per_second']:.0f}/s); commit to handled "
        f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
        f"max {result['max_ms']:.0f} ms; {result['handled_rows']} rows written; CPU per "
        f"message: publisher {result['publisher_cpu_ms']:.1f} ms, workers "
        f"{result['workers_cpu_ms']:.1f} ms, PostgreSQL {result['postgres_cpu_ms']:.1f} ms"
        + (f", Redis {broker_cpu * per_message_ms:.2f} ms" if broker_pid else "")
        + f"; background load {load:.0f}%",
        flush=True,
    )
    return result


# --- the run ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.publish:
        return publish(args)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="oms-bench-relay-") as scratch_dir:
        scratch = Path(scratch_dir)
        for name in args.brokers.split(","):
            for count in args.workers.split(","):
                (scratch / f"{name}-{int(count)}").mkdir()
        base_env = django_environment(args) | {"LOG_LEVEL": "WARNING"}
        print(f"Recreating {database_name(args.database_url)} ...", flush=True)
        database_recreate(args.database_url)
        brokers = brokers_start(args, scratch)
        try:
            subprocess.run(  # noqa: S603 - fixed argv, no shell
                [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                cwd=args.source_root,
                env=base_env,
                check=True,
            )
            import psycopg

            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(
                    "CREATE TABLE bench_relay_handled (key text PRIMARY KEY, "
                    "handled_at timestamptz NOT NULL)"
                )
            print(
                f"{args.messages} messages per run in transactions of {args.batch}; "
                f"{os.cpu_count()} cores",
                flush=True,
            )
            for name, url in brokers.urls.items():
                env = base_env | {"CELERY_BROKER_URL": url}
                broker_pid = brokers.redis.pid if name == "redis" and brokers.redis else None
                for count in (int(value) for value in args.workers.split(",")):
                    results.append(relay_run(args, env, name, count, scratch, broker_pid))
        finally:
            brokers.close()
            if args.drop:
                database_drop(args.database_url)
                print(f"Dropped {database_name(args.database_url)}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
