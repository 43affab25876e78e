"""Django in this process, pointed at the benchmark database and the code under test."""

import argparse
import os
import secrets
import sys
from pathlib import Path


def django_environment(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=args.database_url,
        DJANGO_SETTINGS_MODULE=args.settings,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=env.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONPATH=str(args.source_root),
        # The load comes from one address with a few keys: rate limits would measure
        # themselves. Older refs ignore the variable.
        RATE_LIMIT_ENABLED=env.get("RATE_LIMIT_ENABLED") or "0",
    )
    if getattr(args, "product_list_cache", 0):
        env.update(PRODUCT_LIST_CACHE_SECONDS=str(args.product_list_cache))
    if args.api_key_cache:
        env.update(
            CACHE_REDIS_URL=args.api_key_cache,
            CACHE_KEY_PREFIX=f"oms-bench-{os.getpid()}",
            API_KEY_CACHE_SECONDS="60",
        )
    return env


def django_setup(env: dict[str, str], source_root: Path) -> None:
    os.environ.update(env)
    # Ahead of the editable install's finder, which maps the packages to the work tree;
    # and in it, because Celery's Django fixup puts the current directory first on sys.path.
    sys.path.insert(0, str(source_root))
    os.chdir(source_root)
    import django
    from django.conf import settings

    django.setup()
    import orders

    if not Path(orders.__file__ or "").resolve().is_relative_to(source_root.resolve()):
        raise SystemExit(f"orders imported from {orders.__file__}, not from {source_root}")
    if settings.DEBUG:
        raise SystemExit("DEBUG is on in these settings; benchmark with DEBUG off")
