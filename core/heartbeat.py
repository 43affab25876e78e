"""Liveness files for the Celery worker and beat, for container healthchecks.

A healthcheck asking the worker over the broker (``celery inspect ping``) costs a
second or more and a broker round trip; a file whose age says when the process last
showed signs of life costs a ``stat``:

- Worker: start it with ``--include core.heartbeat`` and ``WORKER_HEARTBEAT_FILE`` set;
  once the worker is ready its consumer's event loop touches the file every
  ``HEARTBEAT_FILE_INTERVAL_SECONDS`` (default 5). A loop that is stuck stops touching it.
- Beat: start it with ``--scheduler core.heartbeat:HeartbeatScheduler`` and
  ``BEAT_HEARTBEAT_FILE`` set; every scheduler tick touches the file (beat ticks at least
  as often as its most frequent job, the outbox sweep every 10 s).
- Check: ``python -m core.heartbeat FILE --max-age SECONDS`` exits 0 when FILE was
  touched within SECONDS, 1 otherwise (missing file included).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from celery.beat import PersistentScheduler
from celery.signals import worker_ready


def heartbeat_touch(path: str) -> None:
    """Set the file's modification time to now, creating it when missing."""
    Path(path).touch()


def heartbeat_interval() -> float:
    return float(os.environ.get("HEARTBEAT_FILE_INTERVAL_SECONDS") or 5)


@worker_ready.connect
def _worker_heartbeat_start(sender: Any = None, **kwargs: Any) -> None:
    """On the ready worker's consumer (the sender), touch the file from its event loop."""
    path = os.environ.get("WORKER_HEARTBEAT_FILE")
    if not path or sender is None:
        return
    heartbeat_touch(path)
    sender.timer.call_repeatedly(heartbeat_interval(), heartbeat_touch, (path,))


class HeartbeatScheduler(PersistentScheduler):
    """Celery's default scheduler that touches BEAT_HEARTBEAT_FILE on every tick."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        path = os.environ.get("BEAT_HEARTBEAT_FILE")
        if path:
            heartbeat_touch(path)
        return float(super().tick(*args, **kwargs))


def heartbeat_age(path: str) -> float | None:
    """Seconds since the file was touched; None when there is no file."""
    try:
        return time.time() - Path(path).stat().st_mtime
    except FileNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.heartbeat", description=__doc__)
    parser.add_argument("file", help="the heartbeat file")
    parser.add_argument("--max-age", type=float, required=True, metavar="SECONDS")
    args = parser.parse_args(argv)
    age = heartbeat_age(args.file)
    if age is None or age > args.max_age:
        print(f"{args.file}: {'missing' if age is None else f'{age:.0f} s old'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
