"""Child processes and ports for the test servers (fake Stripe, fake warehouse, ...)."""

import selectors
import signal
import socket
import subprocess
import time
from typing import IO

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def read_ready_line(stream: IO[bytes], deadline: float) -> str:
    """The next line the process prints, or '' if none comes before `deadline`."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if selector.select(timeout=remaining):
                return stream.readline().decode().strip()
    return ""


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM the process, SIGKILL it if it is still there after ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    if process.stdout is not None:
        process.stdout.close()
    return process.returncode


def wait_answering(
    process: subprocess.Popen[bytes], url: str, *, name: str, timeout: float = 30.0
) -> None:
    """Wait until `url` answers (any status): a server's socket can accept before a
    worker has loaded the app, so the first answer, not the port, says it is up. Fail if
    the process exits first or `timeout` seconds pass."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=30)
            return
        except requests.ConnectionError:
            assert process.poll() is None, f"{name} exited"
            assert time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.1)
