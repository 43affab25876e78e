"""`python -m benchmarks.suite`: the README's benchmark configurations from one command,
each run for real (gunicorn, PostgreSQL, the fake provider, pgbench), summed up in the
tables of the README's "Where it stands"."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from benchmarks.source import REPO_ROOT
from benchmarks.suite import CONFIGURATIONS, checkout_rows, errors, planned_runs, summary


def _run(**phases: Any) -> dict[str, Any]:
    return {
        "machine": {"source": "working tree at abc"},
        "inprocess": {"queries": {"POST /api/v1/orders/, 3 lines": {"round trips": 8}}},
        "phases": [
            {
                "name": name,
                "throughput": throughput,
                "latency_ms": {"p50": 20.0, "p99": 30.0},
                "statuses": statuses,
                "cpu_ms_per_request": {"server": 5.0, "postgres": 4.0},
            }
            for name, (throughput, statuses) in phases.items()
        ],
        "floor": {"tps": 500.0},
        "checkout_per_floor": 0.37,
    }


def test_the_tables_read_each_runs_figures():
    paid = _run(**{"POST /api/v1/orders/": (185.0, {"201": 10})})
    paid["phases"].append(
        {
            "name": "GET /api/v1/orders/{id}/",
            "throughput": 1141.7,
            "latency_ms": {"p50": 3.0, "p99": 7.7},
            "statuses": {"200": 1, "304": 99},
            "cpu_ms_per_request": {"server": 0.84, "postgres": 0.2},
        }
    )

    text = summary([("paid", paid)])

    assert "| paid | 185.0/s | 20.0 / 30.0 ms | 8 | 5.00 + 4.00 ms | 500.0/s | **0.37** |" in text
    assert "| `GET /api/v1/orders/{id}/` | 1,141.7/s | 7.7 ms | 99 % | 0.84 + 0.20 ms |" in text


def test_a_run_without_a_floor_or_a_checkout_says_so():
    run = _run(**{"POST /api/v1/orders/": (100.0, {"201": 3})})
    run["floor"], run["checkout_per_floor"] = None, None

    rows = checkout_rows([("unpaid", run), ("empty", {"phases": []})])

    assert rows[2] == "| unpaid | 100.0/s | 20.0 / 30.0 ms | 8 | 5.00 + 4.00 ms | — | — |"
    assert rows[3].startswith("| empty | no checkout phase")


def test_answers_other_than_a_success_or_a_304_are_errors():
    run = _run(
        **{
            "POST /api/v1/orders/": (100.0, {"201": 3, "500": 1, "unpaid 201": 2}),
            "GET /api/v1/products/": (900.0, {"200": 1, "304": 5, "ConnectionResetError": 1}),
        }
    )

    assert errors(run) == [
        "POST /api/v1/orders/: {'500': 1, 'unpaid 201': 2}",
        "GET /api/v1/products/: {'ConnectionResetError': 1}",
    ]
    assert errors(_run(**{"POST /api/v1/orders/": (1.0, {"201": 1})})) == []


def test_repeats_run_the_configurations_in_turn_a_row_each():
    runs = planned_runs(["paid", "unpaid"], 2)
    assert [name for name, _ in runs] == ["paid #1", "unpaid #1", "paid #2", "unpaid #2"]
    assert [name for name, _ in planned_runs(None, 1)] == ["paid", "hot SKU", "unpaid"]

    paid = _run(**{"GET /api/v1/products/": (900.0, {"304": 9})})
    text = summary([("paid #1", paid), ("paid #2", paid)])
    assert "| `GET /api/v1/products/` (paid #2) | 900.0/s |" in text


def test_one_command_runs_every_configuration_and_prints_the_tables(tmp_path: Path):
    # Given a database name of the suite's own and tiny phases
    database = f"postgres://postgres@127.0.0.1:5432/oms_bench_suite_{uuid.uuid4().hex[:8]}"
    figures, tables = tmp_path / "suite.json", tmp_path / "suite.md"
    # and a metrics directory of the caller's own, which the runs' servers must not empty
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_1.db").write_bytes(b"the caller's")

    # When the suite runs
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.suite",
            "--json",
            str(figures),
            "--markdown",
            str(tables),
            "--database-url",
            database,
            "--drop",
            "--products",
            "20",
            "--duration",
            "1",
            "--read-duration",
            "0.5",
            "--floor-duration",
            "1",
            "--inprocess-iterations",
            "0",
        ],
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        | {"PROMETHEUS_MULTIPROC_DIR": str(metrics)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    # Then every configuration ran against its own floor, with no error, and the tables
    # hold a row per checkout and per read phase
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = json.loads(figures.read_text())
    assert list(runs) == [c.name for c in CONFIGURATIONS]
    for report in runs.values():
        assert report["floor"]["tps"] > 0
        assert report["checkout_per_floor"] > 0
        assert "gthread" in report["command"]
        assert errors(report) == []
    assert [p["name"] for p in runs["paid"]["phases"]][1:] == [
        "GET /api/v1/products/",
        "GET /api/v1/orders/{id}/",
        "GET /api/v1/orders/ (1000 orders' first page)",
    ]
    text = tables.read_text()
    assert text in done.stdout
    for name in ("paid", "hot SKU", "unpaid"):
        assert f"\n| {name} | " in text
    assert text.count("| `GET ") == 3
    assert [p.name for p in metrics.iterdir()] == ["counter_1.db"]
