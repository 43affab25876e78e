"""Issue 11's figures from one command, each beside the database floor of its own run.

    python -m benchmarks.suite --database-url postgres://…/oms_bench_main --drop \\
        --api-key-cache redis://127.0.0.1:6379/14 [--markdown FILE] [--json FILE]

Runs ``python -m benchmarks`` once per configuration of the README's "Where it stands"
(its output streamed as it goes), then prints the two tables of that section from what
the runs measured:

* ``paid``: checkouts authorized by the fake provider, then the three read phases
  (clients revalidate, the product list cached 5 s, order detail over the last 100
  orders);
* ``hot SKU``: paid checkouts of one line of one product;
* ``unpaid``: checkouts without a payment.

Every run serves the API from 2 gunicorn gthread workers of 2 threads over 1,000
products. Options it does not know go to every run (``--duration 30``,
``--ports 18400-18499``, ``--worker-class sync``: the last of a repeated option wins);
the configurations' own options come last, so those stay as above. ``--repeat N`` runs
the configurations N times over, in turn, a row each ("paid #1", "paid #2", ...): on a
shared machine one run's rate can be off by a third. It exits non-zero when a run fails
(an answer other than a success or a `304`, a failed correctness check).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMMON = ("--products", "1000", "--worker-class", "gthread", "--threads", "2")


@dataclass(frozen=True)
class Configuration:
    name: str
    options: tuple[str, ...]


CONFIGURATIONS = (
    Configuration(
        "paid",
        ("--payment", "--conditional", "--product-list-cache", "5", "--read-orders", "100"),
    ),
    Configuration(
        "hot SKU",
        (
            "--payment",
            "--hot-products",
            "1",
            "--max-lines",
            "1",
            "--read-duration",
            "0",
            "--inprocess-iterations",
            "0",
        ),
    ),
    Configuration(
        "unpaid",
        (
            "--conditional",
            "--product-list-cache",
            "5",
            "--read-duration",
            "0",
            "--inprocess-iterations",
            "0",
        ),
    ),
)

CHECKOUT_PHASE = "POST /api/v1/orders/"
ROUND_TRIPS_KEY = "POST /api/v1/orders/, 3 lines"


def _phase(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in report.get("phases", []) if p["name"] == name), None)


def _round_trips(report: dict[str, Any]) -> str:
    queries = (report.get("inprocess") or {}).get("queries") or {}
    counted = queries.get(ROUND_TRIPS_KEY)
    return str(counted["round trips"]) if counted else "—"


def _cpu(phase: dict[str, Any]) -> str:
    cpu = phase["cpu_ms_per_request"]
    return f"{cpu['server']:.2f} + {cpu['postgres']:.2f} ms"


def checkout_rows(reports: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """The checkout table: one row per run."""
    rows = [
        "| checkout | checkouts/s | p50 / p99 | round trips | CPU per checkout: server + "
        "PostgreSQL | floor | ÷ floor |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, report in reports:
        phase = _phase(report, CHECKOUT_PHASE)
        if phase is None:
            rows.append(f"| {name} | no checkout phase | | | | | |")
            continue
        floor = report.get("floor") or {}
        tps = floor.get("tps")
        ratio = report.get("checkout_per_floor")
        latency = phase["latency_ms"]
        rows.append(
            f"| {name} | {phase['throughput']:,.1f}/s | {latency['p50']:.1f} / "
            f"{latency['p99']:.1f} ms | {_round_trips(report)} | {_cpu(phase)} | "
            + (f"{tps:,.1f}/s" if tps else "—")
            + " | "
            + (f"**{ratio:.2f}**" if ratio else "—")
            + " |"
        )
    return rows


def read_rows(reports: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """The reads table: every GET phase of every run."""
    rows = [
        "| read | req/s | p99 | `304`s | CPU per request: server + PostgreSQL |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, report in reports:
        of_run = f" ({name})" if "#" in name else ""
        for phase in report.get("phases", []):
            if not phase["name"].startswith("GET"):
                continue
            statuses = phase["statuses"]
            total = sum(statuses.values()) or 1
            not_modified = 100 * statuses.get("304", 0) / total
            rows.append(
                f"| `{phase['name']}`{of_run} | {phase['throughput']:,.1f}/s | "
                f"{phase['latency_ms']['p99']:.1f} ms | {not_modified:.0f} % | {_cpu(phase)} |"
            )
    return rows


def errors(report: dict[str, Any]) -> list[str]:
    """Every answer of a run that was not a success or a `304`, by phase."""
    found = []
    for phase in report.get("phases", []):
        wrong = {
            status: count
            for status, count in phase["statuses"].items()
            if not (status.isdigit() and (200 <= int(status) < 300 or status == "304"))
        }
        if wrong:
            found.append(f"{phase['name']}: {wrong}")
    return found


def summary(reports: Sequence[tuple[str, dict[str, Any]]]) -> str:
    sources = sorted({r.get("machine", {}).get("source", "?") for _, r in reports})
    lines = [f"Source: {', '.join(sources)}", "", *checkout_rows(reports)]
    if any(p["name"].startswith("GET") for _, r in reports for p in r.get("phases", [])):
        lines += ["", *read_rows(reports)]
    return "\n".join(lines) + "\n"


def planned_runs(only: Sequence[str] | None, repeat: int) -> list[tuple[str, Configuration]]:
    """The runs in order, by name: the configurations asked for, `repeat` times over."""
    wanted = [c for c in CONFIGURATIONS if not only or c.name in only]
    return [
        (configuration.name if repeat == 1 else f"{configuration.name} #{turn}", configuration)
        for turn in range(1, repeat + 1)
        for configuration in wanted
    ]


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.suite",
        description="Run the README's benchmark configurations and print their tables; "
        "other options go to every `python -m benchmarks` run.",
    )
    parser.add_argument("--markdown", default="", metavar="FILE", help="also write the tables")
    parser.add_argument(
        "--json", default="", metavar="FILE", help="write every run's figures, by name"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the configurations N times over, in turn (a row per run: on a shared "
        "machine one run's rate can be off by a third)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[c.name for c in CONFIGURATIONS],
        help="run only this configuration (repeatable)",
    )
    return parser.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args, passthrough = parse_args(argv)
    if "--json" in passthrough:
        raise SystemExit("--json belongs to the suite: it writes every run's figures")
    if args.repeat < 1:
        raise SystemExit("--repeat takes a positive number")
    runs = planned_runs(args.only, args.repeat)
    reports: list[tuple[str, dict[str, Any]]] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="oms-bench-suite-") as scratch:
        for number, (name, configuration) in enumerate(runs):
            figures = Path(scratch) / f"run-{number}.json"
            command = [
                sys.executable,
                "-m",
                "benchmarks",
                *COMMON,
                *passthrough,
                *configuration.options,
                "--json",
                str(figures),
            ]
            print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
            returncode = subprocess.run(command, check=False).returncode  # noqa: S603
            if returncode != 0 or not figures.exists():
                failed.append(f"{name} (exit {returncode})")
                continue
            report = json.loads(figures.read_text())
            reports.append((name, report))
            wrong = errors(report)
            if wrong:
                failed.append(f"{name} ({'; '.join(wrong)})")
    text = summary(reports)
    print("\n" + text, end="")
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(reports), indent=2))
    if failed:
        print(f"Failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
