"""The API under an ASGI server: uvicorn in scripts/run, gunicorn with uvicorn workers in
docker/start-web.sh. Long polls and live event streams are async views that wait on the
event loop; every other request goes to the WSGI application in one hop to a thread
(core.asgi_routing: Django's ASGI handler would hop for each middleware, 3.7 times the
CPU). Tracing (core.tracing) is set up before either application is built, so its
Django middleware is in both; off unless an OTLP endpoint is configured."""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler, StaticFilesHandler
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application

from core.asgi_routing import SyncViewsOverWsgi
from core.tracing import tracing_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

tracing_setup(default_service_name="oms-web")
asgi_application, wsgi_application = get_asgi_application(), get_wsgi_application()
if settings.DEBUG:
    # What runserver did in development: the admin's and the API docs' static files.
    asgi_application = ASGIStaticFilesHandler(asgi_application)
    wsgi_application = StaticFilesHandler(wsgi_application)
application = SyncViewsOverWsgi(asgi_application, wsgi_application)
