"""Hold many idle live streams open against a running server and report what the
server process spends on them.

    python -m benchmarks.streams --base http://127.0.0.1:8765 --key oms_... \\
        --path /api/v1/events/stream/ --streams 1000 --pid <server pid>

Opens the streams (each must answer 200 text/event-stream), keeps them open for
--hold seconds (long enough for heartbeats), checks that every one got a heartbeat,
and prints the server's RSS, open file descriptors, threads and PostgreSQL
connections before and with the streams open. The server must allow that many
streams per user (ORDER_EVENT_STREAMS_PER_USER) and open files (ulimit -n).
"""

import argparse
import asyncio
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.procfs import proc_memory_kib


def server_figures(pid: int) -> dict[str, int]:
    memory = proc_memory_kib(pid)
    threads = int(
        next(
            line.split()[1]
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("Threads:")
        )
    )
    return {
        "rss_kib": memory.get("VmRSS", 0),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": threads,
    }


async def open_stream(
    host: str, port: int, path: str, key: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream refused: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer


async def heartbeat_seen(reader: asyncio.StreamReader, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = await asyncio.wait_for(reader.readline(), remaining)
        except TimeoutError:
            return False
        if not line:
            return False
        if b": heartbeat" in line:
            return True
    return False


async def run(args: argparse.Namespace) -> None:
    url = urlsplit(args.base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    before = server_figures(args.pid)
    started = time.monotonic()
    streams = []
    for start in range(0, args.streams, 100):
        batch = range(start, min(start + 100, args.streams))
        streams += await asyncio.gather(
            *(open_stream(host, port, args.path, args.key) for _ in batch)
        )
    opened_in = time.monotonic() - started
    seen = await asyncio.gather(*(heartbeat_seen(r, args.hold) for r, _ in streams))
    during = server_figures(args.pid)
    print(f"streams open: {len(streams)} (opened in {opened_in:.1f} s)")
    print(f"heartbeats seen: {sum(seen)} of {len(streams)} within {args.hold:.0f} s")
    for name in ("rss_kib", "fds", "threads"):
        print(f"{name}: {before[name]} before, {during[name]} with the streams open")
    extra = (during["rss_kib"] - before["rss_kib"]) / max(len(streams), 1)
    print(f"RSS per stream: {extra:.1f} KiB")
    for _, writer in streams:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--path", default="/api/v1/events/stream/")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=20.0)
    parser.add_argument("--pid", type=int, required=True, help="the server process")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
