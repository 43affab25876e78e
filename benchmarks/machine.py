"""Describe the machine and the software versions under test."""

import os
import sys
from pathlib import Path

from benchmarks.database import postgres_version


def machine_description(database_url: str) -> dict[str, str]:
    cpu_model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    import django
    import gunicorn

    return {
        "cpus": f"{os.cpu_count()} ({cpu_model})",
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "postgres": postgres_version(database_url),
    }
