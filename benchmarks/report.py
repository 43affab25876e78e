"""Print the results."""

import os

from benchmarks.floor import FloorReport
from benchmarks.inprocess import InProcessReport
from benchmarks.phases import PhaseReport


def print_phase(report: PhaseReport) -> None:
    latency = report.latency_ms
    cpu = report.cpu_ms_per_request
    memory = report.memory_kib
    print(
        f"\n{report.name}: {report.requests} requests in {report.elapsed:.1f}s = "
        f"{report.throughput:.1f}/s ({report.ok_throughput:.1f}/s 2xx or 304)\n"
        f"  latency ms  p50 {latency['p50']:.1f}  p95 {latency['p95']:.1f}  "
        f"p99 {latency['p99']:.1f}  max {latency['max']:.1f}\n"
        f"  statuses    {report.statuses}  (client retries {report.retries}, "
        f"connections {report.connects}"
        f"{_not_modified_share(report)})\n"
        f"  CPU ms/req  server {cpu['server']:.2f}  postgres {cpu['postgres']:.2f}  "
        f"client {cpu['client']:.2f}  "
        + (
            f"payment fake {cpu['fake']:.2f}  broker {cpu['broker']:.2f}  "
            if cpu.get("fake") or cpu.get("broker")
            else ""
        )
        + f"other {cpu['other']:.2f}  "
        f"(machine {report.machine_busy_pct:.0f}% busy)\n"
        f"  ceiling     {report.cpu_bound_ceiling:.0f}/s if server, PostgreSQL backends and "
        f"client had all {os.cpu_count()} cores\n"
        f"  memory      {memory['workers']} workers RSS {memory['workers_rss'] / 1024:.1f} MiB "
        f"(peak {memory['workers_peak_rss'] / 1024:.1f}, PSS {memory['workers_pss'] / 1024:.1f}), "
        f"master {memory['master_rss'] / 1024:.1f} MiB"
    )
    for sample in report.error_samples:
        print(f"  error       {sample}")


def _not_modified_share(report: PhaseReport) -> str:
    """The share of 304s, for a conditional phase: a 304 costs a fraction of a 200."""
    not_modified = report.statuses.get("304", 0)
    if not not_modified:
        return ""
    return f"; {100 * not_modified / max(report.requests, 1):.0f} % 304"


def print_inprocess(report: InProcessReport) -> None:
    print("\nStatements per call (CaptureQueriesContext; each one is a round trip):")
    print(f"  {'':34s} {'SQL':>4s} {'SAVEPOINT':>9s} {'BEGIN':>5s} {'COMMIT':>6s} {'health':>6s}")
    for label, kinds in report.queries.items():
        print(
            f"  {label:34s} {kinds.get('SQL', 0):4d} {kinds.get('SAVEPOINT', 0):9d} "
            f"{kinds.get('BEGIN', 0):5d} {kinds.get('COMMIT', 0):6d} "
            f"{kinds.get('health check', 0):6d}   = {kinds['round trips']} round trips"
        )
    if report.timings:
        print("\nIn-process time per call (DB = cursor executes + commits + health checks):")
    for label, timing in report.timings.items():
        print(
            f"  {label:34s} wall {timing['wall_ms']:.2f} ms = DB {timing['db_ms']:.2f} "
            f"(of which COMMIT {timing['commit_ms']:.2f}) + Python {timing['python_ms']:.2f}   "
            f"(process CPU {timing['process_cpu_ms']:.2f} ms, "
            + (
                f"payment fake CPU {timing['fake_cpu_ms']:.2f} ms, "
                if "fake_cpu_ms" in timing
                else ""
            )
            + f"n={timing['iterations']:.0f}; "
            f"{timing.get('python_calls', 0):,.0f} Python calls)"
        )
    if report.profile_areas:
        print(
            f"\ncProfile of {report.profile_label}: own time per area, ms per call "
            "(inflated by the profiler):"
        )
        for area, ms in report.profile_areas[:20]:
            print(f"  {ms:7.3f}  {area}")
        print(report.profile_text)


def floor_ratio(reports: list[PhaseReport], floor: FloorReport | None) -> float | None:
    """oms checkouts/s (2xx) over pgbench's transactions/s of the same statements."""
    checkout = next((r for r in reports if r.name == "POST /api/v1/orders/"), None)
    if checkout is None or floor is None or not floor.tps:
        return None
    return checkout.ok_throughput / floor.tps


def print_floor(floor: FloorReport, checkout_rate: float | None) -> None:
    if floor.error:
        print(f"  floor not measured: {floor.error}")
        return
    print(
        f"  pgbench: {floor.variants} captured checkouts as scripts, "
        f"{floor.statements_per_transaction:.1f} statements each (health check included), "
        f"{floor.clients} connections, {floor.duration:.0f} s\n"
        f"  floor       {floor.tps:.1f} transactions/s, latency average "
        f"{floor.latency_ms:.2f} ms, {floor.transactions} transactions, "
        f"{floor.failed} failed"
    )
    if checkout_rate is not None and floor.tps:
        print(
            f"  oms / floor {checkout_rate:.1f} / {floor.tps:.1f} = {checkout_rate / floor.tps:.2f}"
        )
