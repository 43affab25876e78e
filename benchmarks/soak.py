"""The soak: a mixed load for a long while, each gunicorn worker's RSS sampled as it runs.

A worker that leaks grows without bound; one that only warms up (imports, caches,
connection buffers) grows early and then stays put. So beside start, end and max RSS the
report gives the growth over the second half of the run, which is what must be ~0.
"""

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from benchmarks.load import LoadResult
from benchmarks.procfs import proc_memory_kib


@dataclass
class WorkerMemory:
    pid: int
    # (seconds since the soak started, RSS KiB)
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def start_kib(self) -> int:
        return self.samples[0][1]

    @property
    def end_kib(self) -> int:
        return self.samples[-1][1]

    @property
    def max_kib(self) -> int:
        return max(rss for _, rss in self.samples)

    @property
    def growth_kib(self) -> int:
        return self.end_kib - self.start_kib

    @property
    def second_half_growth_kib(self) -> int:
        """End RSS minus the RSS at the first sample from half-way through the run."""
        last = self.samples[-1][0]
        middle = next(rss for at, rss in self.samples if at >= last / 2)
        return self.end_kib - middle

    def as_dict(self) -> dict[str, int]:
        return {
            "pid": self.pid,
            "samples": len(self.samples),
            "start_kib": self.start_kib,
            "end_kib": self.end_kib,
            "max_kib": self.max_kib,
            "growth_kib": self.growth_kib,
            "second_half_growth_kib": self.second_half_growth_kib,
        }


def sample_rss(
    workers: Callable[[], list[int]],
    running: Future[LoadResult],
    interval: float,
    read_kib: Callable[[int], dict[str, int]] = proc_memory_kib,
) -> tuple[list[WorkerMemory], LoadResult]:
    """Sample every worker's VmRSS every `interval` seconds until the load is done (and
    once more after). A worker that exits and is replaced shows up as a new pid."""
    started = time.monotonic()
    memory: dict[int, WorkerMemory] = {}

    def sample() -> None:
        at = time.monotonic() - started
        for pid in workers():
            rss = read_kib(pid).get("VmRSS")
            if rss is not None:
                memory.setdefault(pid, WorkerMemory(pid)).samples.append((at, rss))

    while True:
        sample()
        try:
            result = running.result(timeout=interval)
        except TimeoutError:
            continue
        sample()
        return sorted(memory.values(), key=lambda worker: worker.pid), result


def print_soak(seconds: float, workers: list[WorkerMemory], result: LoadResult) -> None:
    requests = len(result.latencies)
    statuses = dict(sorted(result.statuses.items()))
    print(
        f"\nSoak: mixed load for {seconds:.0f}s, {requests} requests "
        f"({requests / max(result.elapsed, 1e-9):.1f}/s), statuses {statuses}"
    )
    print(
        f"  {'worker pid':>10s} {'samples':>7s} {'start':>9s} {'end':>9s} {'max':>9s} "
        f"{'growth':>9s} {'2nd half':>9s}   (RSS, MiB)"
    )
    for worker in workers:
        print(
            f"  {worker.pid:>10d} {len(worker.samples):>7d} {worker.start_kib / 1024:>9.1f} "
            f"{worker.end_kib / 1024:>9.1f} {worker.max_kib / 1024:>9.1f} "
            f"{worker.growth_kib / 1024:>+9.1f} {worker.second_half_growth_kib / 1024:>+9.1f}"
        )
