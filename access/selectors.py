from django.contrib.auth.models import User
from django.db.models import QuerySet

from access.models import ApiKey
from core.errors import NotFound


def api_key_list() -> QuerySet[ApiKey]:
    return ApiKey.objects.select_related("user").order_by("-created_at", "-id")


def api_key_get(*, key_id: int) -> ApiKey:
    api_key = api_key_list().filter(pk=key_id).first()
    if api_key is None:
        raise NotFound("No such API key.")
    return api_key


def customer_for_header(value: str) -> User | None:
    """The active customer (not staff) a header names: digits are a user id, else a
    username."""
    users = User.objects.filter(is_active=True, is_staff=False, is_superuser=False)
    value = value.strip()
    if value.isdigit():
        return users.filter(pk=int(value)).first()
    return users.filter(username=value).first() if value else None


def user_for_reference(value: str | int) -> User | None:
    """The active user with this id (digits) or username."""
    users = User.objects.filter(is_active=True)
    text = str(value).strip()
    if text.isdigit():
        return users.filter(pk=int(text)).first()
    return users.filter(username=text).first() if text else None
