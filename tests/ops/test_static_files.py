"""Static files (the admin's CSS, the API docs' scripts) are served by the app itself with
whitenoise: under the local settings (scripts/run's uvicorn) straight from the apps, and
under the production settings from what collectstatic wrote, named by content."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json
import django
django.setup()
from django.templatetags.static import static
from django.test import Client

client = Client(HTTP_HOST="localhost")
url = static("admin/css/base.css")
response = client.get(url)
body = b"".join(response.streaming_content) if response.streaming else response.content
print(json.dumps({"url": url, "status": response.status_code,
                  "type": response.get("Content-Type", ""),
                  "cache": response.get("Cache-Control", ""), "size": len(body)}))
"""


def probe(module: str, **env: str) -> dict:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": f"config.settings.{module}",
        "DJANGO_SECRET_KEY": "probe-only",
        **env,
    }
    environment.pop("DJANGO_DEBUG", None)
    run = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_local_settings_serve_the_admin_css_without_collectstatic():
    answer = probe("local")
    assert answer["url"] == "/static/admin/css/base.css"
    assert (answer["status"], answer["type"].split(";")[0]) == (200, "text/css")
    assert answer["size"] > 1000


def test_production_settings_serve_collected_files_named_by_content(tmp_path):
    static_root = tmp_path / "static"
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "build-only",
        "DJANGO_STATIC_ROOT": str(static_root),
    }
    collect = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert collect.returncode == 0, collect.stderr[-3000:]
    assert (static_root / "staticfiles.json").is_file()

    answer = probe("production", DJANGO_STATIC_ROOT=str(static_root))

    # The URL carries the content hash, so it may be cached for ever.
    assert answer["url"].startswith("/static/admin/css/base.")
    assert answer["url"] != "/static/admin/css/base.css"
    assert (answer["status"], answer["type"].split(";")[0]) == (200, "text/css")
    assert "immutable" in answer["cache"]
    assert answer["size"] > 1000
