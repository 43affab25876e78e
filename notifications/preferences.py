"""Customer notification preferences and one-click unsubscribe (RFC 8058).

Optional kinds (shipped and delivered updates, refund notices) may be switched off per
customer; the order confirmation, payment problems and cancellations always go out. An
email of an optional kind carries `List-Unsubscribe` with a signed link and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`; a POST to it switches that kind off
for that customer, and doing it again changes nothing.
"""

from django.conf import settings
from django.contrib.auth.models import User
from django.core import signing
from django.db import IntegrityError, transaction

from notifications.errors import UnsubscribeLinkInvalid
from notifications.models import OPTIONAL_KINDS, EmailDelivery, NotificationPreference

UNSUBSCRIBE_PATH = "/api/v1/notifications/unsubscribe/"
_SALT = "oms.notifications.unsubscribe"
ALL_KINDS = [kind.value for kind in EmailDelivery.Kind if kind != EmailDelivery.Kind.ORDER_REFUNDED]


def notification_wanted(*, user_id: int, kind: str) -> bool:
    """Whether the customer wants this kind of email (mandatory kinds: always)."""
    if kind not in OPTIONAL_KINDS:
        return True
    enabled = (
        NotificationPreference.objects.filter(user_id=user_id, kind=kind)
        .values_list("enabled", flat=True)
        .first()
    )
    return enabled is not False


def notification_preferences_of(*, user: User) -> dict[str, bool]:
    """Every kind of order email and whether this customer gets it."""
    chosen = dict(NotificationPreference.objects.filter(user=user).values_list("kind", "enabled"))
    return {kind: chosen.get(kind, True) for kind in ALL_KINDS}


def notification_preferences_set(*, user: User, changes: dict[str, bool]) -> dict[str, bool]:
    """Switch optional kinds on or off; the caller validated that only those are named."""
    with transaction.atomic():
        for kind, enabled in changes.items():
            NotificationPreference.objects.update_or_create(
                user=user, kind=kind, defaults={"enabled": enabled}
            )
    return notification_preferences_of(user=user)


def unsubscribe_url(*, user_id: int, kind: str) -> str:
    token = signing.dumps({"u": user_id, "k": kind}, salt=_SALT, compress=True)
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}{UNSUBSCRIBE_PATH}?token={token}"


def unsubscribe_apply(*, token: str) -> tuple[int, str]:
    """Switch off the kind the signed token names for its customer; idempotent. Return
    (user id, kind). Raise UnsubscribeLinkInvalid for a token that is not ours."""
    try:
        claims = signing.loads(token[:1000], salt=_SALT)
        user_id, kind = int(claims["u"]), str(claims["k"])
    except (signing.BadSignature, KeyError, TypeError, ValueError) as error:
        raise UnsubscribeLinkInvalid() from error
    if kind not in OPTIONAL_KINDS or not User.objects.filter(pk=user_id).exists():
        raise UnsubscribeLinkInvalid()
    try:
        with transaction.atomic():
            NotificationPreference.objects.update_or_create(
                user_id=user_id, kind=kind, defaults={"enabled": False}
            )
    except IntegrityError:  # a concurrent click created it first: it is off either way
        NotificationPreference.objects.filter(user_id=user_id, kind=kind).update(enabled=False)
    return user_id, kind
