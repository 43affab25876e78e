"""The service group: internal services whose keys read the order event feed."""

from django.db import migrations


def create_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.get_or_create(name="service")


class Migration(migrations.Migration):
    dependencies = [("access", "0003_legacy_tokens")]

    operations = [migrations.RunPython(create_group, migrations.RunPython.noop)]
