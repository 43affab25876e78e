"""Summarise a cProfile run: own time per library or app area, top functions."""

import cProfile
import io
import pstats
from pathlib import Path
from typing import Any


def profile_area(filename: str, function: str, source_root: Path) -> str:
    """Group a profiled function into a library or app area."""
    if filename == "~":
        return "C builtins"
    path = filename.replace("\\", "/")
    if "site-packages/" in path:
        parts = path.split("site-packages/", 1)[1].split("/")
        if parts[0] == "psycopg" and function in ("wait", "_execute_send", "_exec_command"):
            # Compiled helpers called from here block on the socket: time waiting on
            # PostgreSQL (and, on a busy machine, for the CPU back) lands in these frames.
            return "psycopg: send/wait on PostgreSQL"
        if parts[0] in ("django", "rest_framework") and len(parts) > 2:
            return "/".join(parts[:3]) if parts[1] == "db" else "/".join(parts[:2])
        return parts[0]
    if path.startswith(str(source_root)):
        return "app: " + "/".join(Path(path).relative_to(source_root).parts[:2])
    return "stdlib: " + Path(path).stem


def profile_summary(
    profiler: cProfile.Profile, iterations: int, top: int, source_root: Path
) -> tuple[list[tuple[str, float]], str]:
    """Own time per area (ms per call of the loop body) and the top functions."""
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    areas: dict[str, float] = {}
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        area = profile_area(filename, function, source_root)
        areas[area] = areas.get(area, 0.0) + tottime
    ranked = sorted(areas.items(), key=lambda item: -item[1])
    per_call = [(area, 1000 * seconds / iterations) for area, seconds in ranked]
    text = io.StringIO()
    for order in ("tottime", "cumulative"):
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(order).print_stats(top)
    return per_call, text.getvalue()
