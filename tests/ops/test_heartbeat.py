"""The liveness files the compose healthchecks read: a real worker and a real beat touch
them while they run (core.heartbeat), and the check fails on a stale or missing file."""

import os
import subprocess
import sys
import time
from pathlib import Path

from core.heartbeat import heartbeat_age
from tests.support.processes import stop_process

pytest_plugins = ("tests.support.redis_server",)

ROOT = Path(__file__).resolve().parents[2]


def check(path: Path, max_age: float) -> int:
    command = [sys.executable, "-m", "core.heartbeat", str(path), "--max-age", str(max_age)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, timeout=30).returncode


def touched_twice(path: Path, process: subprocess.Popen[bytes], log: Path) -> bool:
    """Whether the file appears and is touched again later, while the process runs."""
    deadline = time.monotonic() + 60
    first = None
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists():
            mtime = path.stat().st_mtime
            if first is None:
                first = mtime
            elif mtime > first:
                return True
        time.sleep(0.2)
    raise AssertionError(f"{path} not kept fresh; log:\n{log.read_text()[-3000:]}")


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", **env},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def test_a_running_worker_keeps_its_heartbeat_file_fresh(redis_server, tmp_path):
    heartbeat = tmp_path / "worker-heartbeat"
    env = {
        "CELERY_BROKER_URL": redis_server.url,
        "WORKER_HEARTBEAT_FILE": str(heartbeat),
        "HEARTBEAT_FILE_INTERVAL_SECONDS": "0.5",
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--include"]
    command += ["core.heartbeat", "-Q", "default", "--concurrency", "1", "--without-mingle"]
    command += ["--without-gossip", "-n", f"heartbeat-{os.getpid()}@%h"]
    worker = start(command, env, tmp_path / "worker.log")
    try:
        assert touched_twice(heartbeat, worker, tmp_path / "worker.log")
        assert check(heartbeat, max_age=5) == 0
    finally:
        stop_process(worker, timeout=20)
    # A stopped worker's file goes stale: the healthcheck then fails.
    time.sleep(1.5)
    assert heartbeat_age(str(heartbeat)) > 1
    assert check(heartbeat, max_age=1) == 1


def test_a_running_beat_keeps_its_heartbeat_file_fresh(redis_server, tmp_path):
    heartbeat = tmp_path / "beat-heartbeat"
    env = {
        "CELERY_BROKER_URL": redis_server.url,
        "BEAT_HEARTBEAT_FILE": str(heartbeat),
        "OUTBOX_SWEEP_INTERVAL_SECONDS": "1",
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "beat", "--scheduler"]
    command += ["core.heartbeat:HeartbeatScheduler", "--schedule", str(tmp_path / "schedule")]
    beat = start(command, env, tmp_path / "beat.log")
    try:
        assert touched_twice(heartbeat, beat, tmp_path / "beat.log")
        assert check(heartbeat, max_age=5) == 0
    finally:
        stop_process(beat, timeout=20)


def test_the_check_fails_without_a_heartbeat_file(tmp_path):
    assert check(tmp_path / "never-written", max_age=60) == 1
