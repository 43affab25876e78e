"""Outgoing email (SMTP), each value from the environment.

Imported at the end of base.py. Self-contained on purpose: it reads os.environ itself
rather than importing base.py's helpers, so importing it never re-enters base.py.
"""

import os
from datetime import timedelta


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


EMAIL_BACKEND = _env("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = _env("EMAIL_HOST", "localhost")
EMAIL_PORT = int(_env("EMAIL_PORT", "25"))
EMAIL_HOST_USER = _env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS", False)  # STARTTLS, usually port 587
EMAIL_USE_SSL = _env_bool("EMAIL_USE_SSL", False)  # implicit TLS, usually port 465
# Seconds for each blocking socket operation; Django's default (None) can hang a worker.
EMAIL_TIMEOUT = int(_env("EMAIL_TIMEOUT_SECONDS", "10"))
DEFAULT_FROM_EMAIL = _env("DEFAULT_FROM_EMAIL", "OMS <orders@oms.example>")
SERVER_EMAIL = _env("SERVER_EMAIL", DEFAULT_FROM_EMAIL)

# The right-hand side of every Message-ID the notifications app sets; one per
# environment, so staging and production ids never collide.
EMAIL_MESSAGE_ID_DOMAIN = _env("EMAIL_MESSAGE_ID_DOMAIN", "oms.example")
# How long a worker may hold an email delivery while talking to SMTP before another
# worker may take it over (it presumes the first one died). Keep it well above the
# longest a send can take: a handful of EMAIL_TIMEOUT-bounded exchanges.
EMAIL_SEND_LOCK_TIMEOUT = timedelta(seconds=int(_env("EMAIL_SEND_LOCK_TIMEOUT_SECONDS", "300")))
