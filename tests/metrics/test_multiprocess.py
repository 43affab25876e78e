"""Multiprocess mode: what several processes count, one scrape reads in full."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from core.metrics import API_ERRORS
from tests.metrics.conftest import METRICS_TOKEN, parse_samples, value
from tests.support.processes import free_port, stop_process, wait_answering
from tests.support.worker import REPO_ROOT, worker_database_url

INCREMENT = """
import django
django.setup()
from core.metrics import API_ERRORS
API_ERRORS.labels(code="multiprocess_probe", status="499").inc(3)
"""


@pytest.mark.django_db
def test_a_scrape_sums_what_another_process_counted(scrape):
    before = value(scrape(), "oms_api_errors_total", code="multiprocess_probe", status="499")

    API_ERRORS.labels(code="multiprocess_probe", status="499").inc(2)
    subprocess.run(
        [sys.executable, "-c", INCREMENT],
        cwd=REPO_ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"},
        check=True,
        timeout=60,
    )
    after = value(scrape(), "oms_api_errors_total", code="multiprocess_probe", status="499")

    assert after - before == 5


@pytest.mark.django_db
def test_gunicorn_workers_share_one_count_from_a_fresh_directory(tmp_path: Path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    # A file an earlier run left: gunicorn.conf.py removes it before any worker starts
    # (read, it would break every scrape).
    (metrics_dir / "counter_999999.db").write_bytes(b"left over")
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": worker_database_url(),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_TOKEN": METRICS_TOKEN,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--workers", "2",
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        # The first answer is counted like the others.
        wait_answering(server, f"{base}/health/", name="gunicorn")
        for _ in range(9):
            with requests.Session() as session:  # a new connection each time
                assert session.get(f"{base}/health/", timeout=5).status_code == 200
        scraped = requests.get(
            f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5
        )
    finally:
        exit_code = stop_process(server)

    assert scraped.status_code == 200, scraped.text
    samples = parse_samples(scraped.text)
    ok = {"route": "health", "method": "GET", "status": "200"}
    assert value(samples, "oms_http_requests_total", **ok) == 10, exit_code
    assert not (metrics_dir / "counter_999999.db").exists()
