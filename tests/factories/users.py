from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"customer{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("password")


# The groups staff who existed before API keys were given (access migration 0002): every
# staff endpoint but key management.
STAFF_GROUPS = ("support", "warehouse", "finance")


class StaffFactory(UserFactory):
    """Staff in the given groups (default: support, warehouse, finance)."""

    class Meta:
        # Adding groups changes no field of the user: no save after the hook.
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True

    @factory.post_generation
    def groups(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if not create:
            return
        names = STAFF_GROUPS if extracted is None else extracted
        self.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in names))
