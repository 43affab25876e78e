"""The API under an ASGI server: uvicorn in scripts/run, gunicorn with uvicorn workers in
docker/start-web.sh. Long polls and live event streams are async views that wait on the
event loop. Tracing (core.tracing) is set up before the application is built, so its
Django middleware is in place; off unless an OTLP endpoint is configured."""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from core.tracing import tracing_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

tracing_setup(default_service_name="oms-web")
application = get_asgi_application()
if settings.DEBUG:
    # What runserver did in development: the admin's and the API docs' static files.
    application = ASGIStaticFilesHandler(application)
