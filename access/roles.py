"""Who a caller is, for the policy: a customer, or staff in one or more groups.

A non-staff user is a customer (their own orders only). Staff get the roles of the
groups they are in (Django auth groups with these names); a superuser holds every staff
role. A service account (an internal service reading the event feed) is a staff user in
the `service` group only. A key acting for a customer (OMS-On-Behalf-Of) has the customer role only.
"""

from django.contrib.auth.models import User
from django.db import models


class Role(models.TextChoices):
    CUSTOMER = "customer", "a customer: their own orders"
    SUPPORT = "support", "staff group: customer service"
    WAREHOUSE = "warehouse", "staff group: catalogue, stock, shipping"
    FINANCE = "finance", "staff group: refunds"
    ADMIN = "admin", "staff group: API keys"
    # A service account: a staff user in this group only, whose keys read the event feed
    # and nothing else.
    SERVICE = "service", "staff group: internal services reading the event feed"


STAFF_ROLES: frozenset[str] = frozenset(Role.values) - {Role.CUSTOMER}


def roles_of(user: User) -> frozenset[str]:
    """The user's roles (one query for staff, none for a customer)."""
    if not user.is_staff:
        return frozenset({Role.CUSTOMER.value})
    if user.is_superuser:
        return STAFF_ROLES
    names = user.groups.filter(name__in=STAFF_ROLES).values_list("name", flat=True)
    return frozenset(names)
