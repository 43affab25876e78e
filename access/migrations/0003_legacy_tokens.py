"""Every plaintext DRF token becomes an API key with the same secret: its SHA-256 is
stored, the plaintext row deleted. It keeps working as `Authorization: Token <key>` (and
as `Bearer`), with every scope; its user's roles still decide what it may call."""

import hashlib

from django.db import migrations

# The scopes when this migration was written (access.scopes may grow later).
SCOPES = [
    "catalog:read",
    "catalog:write",
    "stock:read",
    "stock:write",
    "orders:read",
    "orders:write",
    "shipments:write",
    "refunds:write",
    "transitions:write",
    "api_keys:read",
    "api_keys:write",
]


def migrate_tokens(apps, schema_editor):
    Token = apps.get_model("authtoken", "Token")
    ApiKey = apps.get_model("access", "ApiKey")
    tokens = list(Token.objects.all())
    ApiKey.objects.bulk_create(
        [
            ApiKey(
                user_id=token.user_id,
                name="migrated token",
                prefix=token.key[:8],
                key_hash=hashlib.sha256(token.key.encode()).hexdigest(),
                scopes=SCOPES,
                created_at=token.created,
                legacy_token=True,
            )
            for token in tokens
        ],
        ignore_conflicts=True,
    )
    Token.objects.filter(pk__in=[token.pk for token in tokens]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0002_staff_groups"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]

    operations = [migrations.RunPython(migrate_tokens, migrations.RunPython.noop)]
