"""The soak's memory readings: /proc parsing on real processes, and the per-worker
report (start, end, max, growth, growth over the second half) from live samples."""

import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from benchmarks.load import LoadResult
from benchmarks.procfs import proc_memory_kib
from benchmarks.soak import sample_rss

GROWER = """
import sys, time
held = []
for _ in range(5):
    held.append(bytearray(10 * 1024 * 1024))  # zero-filled: touched, so resident
    time.sleep(0.25)
sys.stdout.write("done\\n"); sys.stdout.flush()
time.sleep(float(sys.argv[1]))
sys.stdout.write("held\\n"); sys.stdout.flush()
time.sleep(60)  # still holding while the sampler stops: an exiting process frees its pages
"""


def load_result() -> LoadResult:
    return LoadResult("mixed", 1.0, [0.001], Counter({"200": 1}), [], 0.0, 0, [])


def test_proc_memory_reads_rss_peak_and_pss_of_a_live_process():
    before = proc_memory_kib(os.getpid())
    held = bytearray(32 * 1024 * 1024)
    after = proc_memory_kib(os.getpid())
    assert after["VmRSS"] - before["VmRSS"] >= 30 * 1024
    assert after["VmHWM"] >= after["VmRSS"]
    assert after.get("Pss", 1) > 0
    assert len(held) == 32 * 1024 * 1024
    assert proc_memory_kib(2**22 + 12345) == {}  # no such process: nothing, no error


def test_sample_rss_reports_a_growing_worker_and_then_its_flat_second_half():
    # Given a process that grows by 50 MiB in its first ~1.3 s and then holds still
    child = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-c", GROWER, "2.5"], stdout=subprocess.PIPE
    )
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:

            def run() -> LoadResult:
                assert child.stdout is not None
                while child.stdout.readline() not in (b"held\n", b""):
                    pass
                return load_result()

            # When it is sampled every 0.1 s until it has held still for 2.5 s
            started = time.monotonic()
            workers, result = sample_rss(lambda: [child.pid], pool.submit(run), 0.1)
    finally:
        child.kill()
        child.wait()

    # Then one worker, its growth seen, and nothing grown over the second half
    assert result.statuses["200"] == 1
    assert time.monotonic() - started >= 3
    [worker] = workers
    assert worker.pid == child.pid
    assert len(worker.samples) >= 20
    assert worker.growth_kib >= 40 * 1024
    assert worker.max_kib >= worker.start_kib + 40 * 1024
    assert abs(worker.second_half_growth_kib) < 2 * 1024
    report = worker.as_dict()
    assert report["growth_kib"] == worker.end_kib - worker.start_kib
