"""API keys: make, rotate, revoke, and recognise them.

A key is `oms_` and 40 random base62 characters; the database keeps its SHA-256 (a
random key of that length needs no slow hash) and its first 12 characters to show.
Keys migrated from the old plaintext tokens keep their 40 hex characters.

With API_KEY_CACHE_SECONDS > 0 a recognised active key (and its user) is kept in the
shared cache (API_KEY_CACHE, Redis) by its hash, so a request needs no database
statement to know its caller. Revoking or rotating a key overwrites its entry with a
tombstone in the same call, and requests only ever *add* entries, so a request that
read the key before the change cannot put it back: a revoked key stops working at once
in every process. Expiry is checked on every use. Other changes (a user deactivated)
reach a cached key within API_KEY_CACHE_SECONDS.
"""

import hashlib
import logging
import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import caches
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from access.errors import ApiKeyNotActive
from access.models import ApiKey
from access.scopes import scopes_validate
from core.actors import Actor
from core.errors import NotFound

logger = logging.getLogger(__name__)

KEY_PREFIX = "oms_"
_ALPHABET = string.ascii_letters + string.digits
_SECRET_LENGTH = 40
PREFIX_LENGTH = 12
LEGACY_PREFIX_LENGTH = 8


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_display_prefix(key: str) -> str:
    length = PREFIX_LENGTH if key.startswith(KEY_PREFIX) else LEGACY_PREFIX_LENGTH
    return key[:length]


def key_generate() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LENGTH))


@dataclass(frozen=True)
class IssuedKey:
    """A key just made: `key` is the only time the plaintext exists."""

    api_key: ApiKey
    key: str


def api_key_create(
    *,
    user: User,
    name: str,
    scopes: list[str] | tuple[str, ...],
    actor: Actor,
    expires_at: datetime | None = None,
    act_as_customer: bool = False,
    key: str | None = None,
) -> IssuedKey:
    """Make a key for `user`. `key` is for keys derived elsewhere (the demo data)."""
    api_key = ApiKey(
        user=user,
        name=name,
        scopes=list(scopes),
        act_as_customer=act_as_customer,
        expires_at=expires_at,
    )
    return api_key_issue(api_key=api_key, actor=actor, key=key)


def api_key_issue(*, api_key: ApiKey, actor: Actor, key: str | None = None) -> IssuedKey:
    """Give an unsaved key (owner, name, scopes, ... set) its secret and save it."""
    key = key or key_generate()
    api_key.prefix = key_display_prefix(key)
    api_key.key_hash = key_hash(key)
    api_key.scopes = scopes_validate(api_key.scopes)
    api_key.created_by = actor.user
    api_key.save()
    return IssuedKey(api_key=api_key, key=key)


def api_key_revoke(*, key_id: int, actor: Actor) -> ApiKey:
    """Revoke the key now (a key revoked before stays revoked from then)."""
    now = timezone.now()
    ApiKey.objects.filter(pk=key_id, revoked_at__isnull=True).update(revoked_at=now)
    api_key = ApiKey.objects.filter(pk=key_id).first()
    if api_key is None:
        raise NotFound("No such API key.")
    _cache_forget(api_key.key_hash)
    return api_key


def api_key_rotate(
    *,
    key_id: int,
    actor: Actor,
    old_key_expires_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    """Issue a successor with the same owner, name, scopes and capability; the old key
    keeps working until `old_key_expires_at` (default: API_KEY_ROTATION_OVERLAP from
    now), never longer than it would have."""
    now = timezone.now()
    with transaction.atomic():
        old = ApiKey.objects.select_for_update().filter(pk=key_id).first()
        if old is None:
            raise NotFound("No such API key.")
        if old.state(now=now) != "active" or old.replaced_by_id is not None:
            raise ApiKeyNotActive("Only an active key that was not rotated yet can be rotated.")
        overlap_until = old_key_expires_at or now + settings.API_KEY_ROTATION_OVERLAP
        issued = api_key_create(
            user=old.user,
            name=old.name,
            scopes=old.scopes,
            act_as_customer=old.act_as_customer,
            expires_at=expires_at,
            actor=actor,
        )
        old.expires_at = min(overlap_until, old.expires_at) if old.expires_at else overlap_until
        old.replaced_by = issued.api_key
        old.save(update_fields=["expires_at", "replaced_by"])
        _cache_forget(old.key_hash)
    return issued


_CACHE_KEY_PREFIX = "access:api-key:"
# What a revoked or rotated key's entry is overwritten with.
_FORGOTTEN = "forgotten"
# When this process last recorded each key's use (so a cached key, whose last_used_at
# is as old as its entry, is not recorded on every request).
_last_used_recorded: dict[int, datetime] = {}


def _cache_enabled() -> bool:
    return bool(settings.API_KEY_CACHE_SECONDS > 0)


def _cache_get(hashed: str) -> ApiKey | None:
    if not _cache_enabled():
        return None
    try:
        cached = caches[settings.API_KEY_CACHE].get(_CACHE_KEY_PREFIX + hashed)
    except Exception:  # the cache is an optimisation: the database still answers
        logger.warning("API key cache unavailable; reading the key from the database")
        return None
    return cached if isinstance(cached, ApiKey) else None


def _cache_add(hashed: str, api_key: ApiKey) -> None:
    """Add only: never over a tombstone a revoke or rotation left meanwhile."""
    if not _cache_enabled():
        return
    try:
        caches[settings.API_KEY_CACHE].add(
            _CACHE_KEY_PREFIX + hashed, api_key, timeout=settings.API_KEY_CACHE_SECONDS
        )
    except Exception:
        logger.warning("API key cache unavailable; the key was not cached")


def _cache_forget(hashed: str) -> None:
    """Overwrite the key's entry with a tombstone that outlives any entry added before.
    Errors propagate: a revoke that could not reach the cache must not report success."""
    if _cache_enabled():
        caches[settings.API_KEY_CACHE].set(
            _CACHE_KEY_PREFIX + hashed, _FORGOTTEN, timeout=settings.API_KEY_CACHE_SECONDS
        )


def api_key_authenticate(key: str) -> tuple[ApiKey | None, str]:
    """The active key with this plaintext (its user loaded), or None and why not.

    Its use is recorded at most once per API_KEY_LAST_USED_RESOLUTION: one conditional
    UPDATE then, no write on the other requests.
    """
    hashed = key_hash(key)
    now = timezone.now()
    api_key = _cache_get(hashed)
    cached = api_key is not None
    if api_key is None:
        api_key = ApiKey.objects.select_related("user").filter(key_hash=hashed).first()
        if api_key is None or not api_key.user.is_active:
            return None, "Invalid API key."
    state = api_key.state(now=now)
    if state != "active":
        return None, f"API key {state}."
    stale_before = now - settings.API_KEY_LAST_USED_RESOLUTION
    last_used = api_key.last_used_at or stale_before
    if cached:  # the entry's last_used_at is as old as the entry
        last_used = max(last_used, _last_used_recorded.get(api_key.pk, stale_before))
    if last_used <= stale_before:
        ApiKey.objects.filter(pk=api_key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_before)
        ).update(last_used_at=now)
        api_key.last_used_at = now
        if len(_last_used_recorded) > 100_000:
            _last_used_recorded.clear()
        _last_used_recorded[api_key.pk] = now
    if not cached:
        _cache_add(hashed, api_key)
    return api_key, ""
