"""Development: debug on; PostgreSQL and Redis on loopback as base sets them."""

from .base import *  # noqa: F403
from .base import env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)
