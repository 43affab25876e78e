"""The web server under test (gunicorn or granian) on a free loopback port."""

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.procfs import proc_children


def free_port(ports: range | None = None) -> int:
    """A loopback port free now: any (the kernel's pick), or the first free one of `ports`."""
    for port in ports or [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError(f"no free loopback port in {ports}")


# --worker-class uvicorn: gunicorn with uvicorn workers, ASGI with a pool.
UVICORN_WORKER = "uvicorn_worker.UvicornWorker"
# --worker-class granian / granian-wsgi: granian's own worker processes (a Rust HTTP
# server calling Python), on config.asgi (asginl: ASGI without lifespan, which Django
# does not speak) or on config.wsgi.
GRANIAN_INTERFACES = {"granian": "asginl", "granian-wsgi": "wsgi"}


def server_command(args: argparse.Namespace, port: int) -> tuple[list[str], dict[str, str]]:
    """The argv for --worker-class, and environment additions (a pool under ASGI)."""
    worker_class, app = args.worker_class, getattr(args, "app", "config.wsgi:application")
    if worker_class in GRANIAN_INTERFACES:
        interface = GRANIAN_INTERFACES[worker_class]
        app = "config.wsgi:application" if interface == "wsgi" else "config.asgi:application"
        command = [
            sys.executable,
            "-m",
            "granian",
            app,
            "--interface",
            interface,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--blocking-threads",
            str(args.threads),
            "--no-ws",
            "--backlog",
            "512",
            "--workers-kill-timeout",
            "5",
            "--log-level",
            "warning",
        ]
        return command, ({} if interface == "wsgi" else {"DATABASE_POOL": "1"})
    extra: dict[str, str] = {}
    if worker_class in ("uvicorn", UVICORN_WORKER):
        worker_class, app = UVICORN_WORKER, "config.asgi:application"
        extra = {"DATABASE_POOL": "1"}
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(args.threads),
        "--backlog",
        "512",
        "--timeout",
        "60",
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
    ]
    return command, extra


class Server:
    """gunicorn (sync, gthread, uvicorn workers) or granian, per args.worker_class; its
    worker processes are the master's children."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port(getattr(args, "port_range", None))
        self.log_path = log_path
        command, extra = server_command(args, self.port)
        if env.get("PROMETHEUS_MULTIPROC_DIR"):
            # gunicorn empties the metrics directory it is given when it starts (the
            # repo's gunicorn.conf.py): never the caller's, whose processes write there.
            metrics_dir = log_path.parent / f"metrics-{self.port}"
            metrics_dir.mkdir(exist_ok=True)
            env = env | {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        self.name = Path(command[2]).name
        self.log = log_path.open("wb")
        # Own session: a terminal Ctrl-C reaches this script, which then stops the server.
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command,
            cwd=args.source_root,
            env={**extra, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers = args.workers

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}:\n{self.log_tail()}")
            if len(self.worker_pids()) >= self.workers:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                    conn.request("GET", "/health/")
                    if conn.getresponse().status == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        return proc_children(self.process.pid)

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the group this script started
                self.process.wait(timeout=5)
        self.log.close()
