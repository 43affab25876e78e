"""Measure one load phase: throughput, latency, CPU per request, worker memory."""

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from benchmarks.database import backend_pids
from benchmarks.load import LoadResult, LoadSpec, run_load
from benchmarks.payment_fake import PaymentFake
from benchmarks.procfs import machine_busy_seconds, proc_cpu_seconds, proc_memory_kib
from benchmarks.server import Server
from benchmarks.stats import percentile


@dataclass
class PhaseReport:
    name: str
    requests: int
    elapsed: float
    throughput: float
    ok_throughput: float
    latency_ms: dict[str, float]
    statuses: dict[str, int]
    retries: int
    connects: int
    cpu_ms_per_request: dict[str, float]
    machine_busy_pct: float
    # Throughput if these processes had every core to themselves: cores / CPU per request.
    cpu_bound_ceiling: float
    memory_kib: dict[str, int]
    error_samples: list[str]


def run_phase(
    name: str,
    spec: LoadSpec,
    server: Server,
    database: str,
    pool: ProcessPoolExecutor,
    fake: PaymentFake | None = None,
) -> tuple[PhaseReport, LoadResult]:
    workers = server.worker_pids()
    fake_before = fake.cpu_seconds() if fake else 0.0
    broker_before = fake.broker_cpu_seconds() if fake else 0.0
    backends = backend_pids(database)
    cpu_before = {pid: proc_cpu_seconds(pid) for pid in [*workers, *backends]}
    busy_before = machine_busy_seconds()
    wall_before = time.perf_counter()
    result = pool.submit(run_load, spec).result()
    wall = time.perf_counter() - wall_before
    busy = machine_busy_seconds() - busy_before
    fake_cpu = fake.cpu_seconds() - fake_before if fake else 0.0
    broker_cpu = fake.broker_cpu_seconds() - broker_before if fake else 0.0
    workers_after = server.worker_pids()
    backends_after = backend_pids(database)
    app_cpu = sum(proc_cpu_seconds(pid) - cpu_before.get(pid, 0.0) for pid in workers_after)
    db_cpu = sum(proc_cpu_seconds(pid) - cpu_before.get(pid, 0.0) for pid in backends_after)
    requests = len(result.latencies)
    per_request = 1000 / max(requests, 1)
    memory = [proc_memory_kib(pid) for pid in workers_after]
    master = proc_memory_kib(server.process.pid)
    ordered = sorted(result.latencies)
    ok = sum(
        count
        for status, count in result.statuses.items()
        if status.startswith("2") or status == "304"
    )
    report = PhaseReport(
        name=name,
        requests=requests,
        elapsed=result.elapsed,
        throughput=requests / result.elapsed if result.elapsed else 0.0,
        ok_throughput=ok / result.elapsed if result.elapsed else 0.0,
        latency_ms={
            "p50": 1000 * percentile(ordered, 0.50),
            "p95": 1000 * percentile(ordered, 0.95),
            "p99": 1000 * percentile(ordered, 0.99),
            "max": 1000 * (ordered[-1] if ordered else float("nan")),
        },
        statuses=dict(sorted(result.statuses.items())),
        retries=result.retries,
        connects=result.connects,
        cpu_ms_per_request={
            "server": app_cpu * per_request,
            "postgres": db_cpu * per_request,
            "client": result.client_cpu * per_request,
            # The payment fake (--payment): not part of oms, shown apart and left out of
            # the ceiling.
            "fake": fake_cpu * per_request,
            # The private Celery broker of a --payment run (outbox messages of the
            # confirmed orders).
            "broker": broker_cpu * per_request,
            "other": max(busy - app_cpu - db_cpu - result.client_cpu - fake_cpu - broker_cpu, 0.0)
            * per_request,
        },
        machine_busy_pct=100 * busy / (wall * (os.cpu_count() or 1)),
        cpu_bound_ceiling=(os.cpu_count() or 1)
        * requests
        / max(app_cpu + db_cpu + result.client_cpu, 1e-9),
        memory_kib={
            "workers_rss": sum(m.get("VmRSS", 0) for m in memory),
            "workers_peak_rss": sum(m.get("VmHWM", 0) for m in memory),
            "workers_pss": sum(m.get("Pss", 0) for m in memory),
            "master_rss": master.get("VmRSS", 0),
            "workers": len(memory),
        },
        error_samples=result.error_samples,
    )
    return report, result
