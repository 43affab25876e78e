"""Production: secrets and hosts must come from the environment."""

import os
from pathlib import Path

from .base import *  # noqa: F403
from .base import MIDDLEWARE, STATIC_ROOT, env_bool, env_int, env_str
from .static import middleware_with_whitenoise

DEBUG = False
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0)
STRIPE_FORBID_REDIRECTS = env_bool("STRIPE_FORBID_REDIRECTS", True)

# Static files: collected at image build (collectstatic), compressed and named by their
# content, served by whitenoise with far-future cache headers.
MIDDLEWARE = middleware_with_whitenoise(MIDDLEWARE)
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(STATIC_ROOT)))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
