"""The API under a WSGI server (gunicorn in `python -m benchmarks`). Tracing (core.tracing)
is set up before the application is built; off unless an OTLP endpoint is configured."""

import os

from django.core.wsgi import get_wsgi_application

from core.tracing import tracing_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

tracing_setup(default_service_name="oms-web")
application = get_wsgi_application()
