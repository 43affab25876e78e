"""Development: debug on; PostgreSQL and Redis on loopback as base sets them."""

from .base import *  # noqa: F403
from .base import MIDDLEWARE, env_bool
from .static import middleware_with_whitenoise

DEBUG = env_bool("DJANGO_DEBUG", True)

# uvicorn (scripts/run) serves no static files: whitenoise does, straight from the apps'
# static directories, so the admin and the API docs work without collectstatic.
MIDDLEWARE = middleware_with_whitenoise(MIDDLEWARE)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
