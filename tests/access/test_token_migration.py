"""Upgrading: plaintext DRF tokens become hashed keys that still authenticate, and staff
keep what they could do."""

import hashlib
import importlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.test import APIClient

from access.models import ApiKey
from access.scopes import ALL_SCOPES

LEGACY_SCOPES = importlib.import_module("access.migrations.0003_legacy_tokens").SCOPES

BEFORE = [("access", "0001_initial")]
TOKENS = ("authtoken", "0004_alter_tokenproxy_options")
LEGACY_KEY = "0123456789abcdef0123456789abcdef01234567"


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state([*targets, TOKENS]).apps


@pytest.mark.django_db(transaction=True)
def test_a_drf_token_still_authenticates_after_the_migration():
    latest = [("access", "0003_legacy_tokens")]
    old_apps = migrate(BEFORE)
    try:
        # given a customer and a staff member with tokens, before the upgrade
        user_model = old_apps.get_model("auth", "User")
        token_model = old_apps.get_model("authtoken", "Token")
        customer = user_model.objects.create(username="legacy-customer")
        staff = user_model.objects.create(username="legacy-staff", is_staff=True)
        token_model.objects.create(key=LEGACY_KEY, user=customer)
        token_model.objects.create(key="f" * 40, user=staff)

        # when the migrations run
        migrate(latest)
    finally:
        migrate(latest)

    # then no plaintext is left, each token is a key with the same secret
    assert token_model.objects.count() == 0
    api_key = ApiKey.objects.get(user_id=customer.pk)
    assert api_key.key_hash == hashlib.sha256(LEGACY_KEY.encode()).hexdigest()
    assert api_key.prefix == LEGACY_KEY[:8]
    assert api_key.legacy_token
    # Every scope there was when tokens were migrated (later scopes need a new key).
    assert api_key.scopes == LEGACY_SCOPES
    assert set(LEGACY_SCOPES) < set(ALL_SCOPES)
    # and the old header still works, as does Bearer
    for scheme in ("Token", "Bearer"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"{scheme} {LEGACY_KEY}")
        assert client.get("/api/v1/orders/").status_code == 200
    # and the staff member keeps the staff endpoints
    staff_client = APIClient()
    staff_client.credentials(HTTP_AUTHORIZATION=f"Token {'f' * 40}")
    assert staff_client.get("/api/v1/stock/").status_code == 200
    assert {group.name for group in user_model.objects.get(pk=staff.pk).groups.all()} == {
        "support",
        "warehouse",
        "finance",
    }
