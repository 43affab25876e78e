"""The API under an ASGI server: uvicorn in scripts/run, gunicorn with uvicorn workers in
docker/start-web.sh. Long polls and live event streams are async views that wait on the
event loop."""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

application = get_asgi_application()
if settings.DEBUG:
    # What runserver did in development: the admin's and the API docs' static files.
    application = ASGIStaticFilesHandler(application)
